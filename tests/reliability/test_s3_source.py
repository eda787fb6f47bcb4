"""``python -m ttsr.data prepare --src s3://bucket/prefix`` against an S3-compatible server on
127.0.0.1 (moto): the same shards and receipts as the same images prepared from a folder, the
manifest differing only in its ``source``; a rerun does nothing; a missing prefix or an unknown
bucket is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from .conftest import DATA, env
from .servers import start_moto

pytestmark = pytest.mark.slow

BUCKET = "raw"


def _files(out) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in (".lock", "manifest.json")
    }


def _prepare(src: str, out, server, cwd) -> subprocess.CompletedProcess:
    argv = [*DATA, "prepare", "--src", src, "--out", str(out), "--sizes", "32"]
    argv += ["--files-per-shard", "3", "--workers", "2", "--no-progress"]
    return subprocess.run(
        argv, cwd=cwd, env=env(**server.env()), capture_output=True, text=True, timeout=300
    )


def test_s3_source_gives_the_folders_shards(tmp_path):
    pytest.importorskip("moto", reason="moto[server] (the test extra) is not installed")
    import boto3

    server = start_moto(tmp_path)
    try:
        client = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        src = tmp_path / "src"
        (src / "sub").mkdir(parents=True)
        (src / ".hidden").mkdir()
        rng = np.random.default_rng(1)
        for i in range(7):
            img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(img).save(src / ("sub" if i % 2 else "") / f"{i}.png")
        (src / "broken.png").write_bytes(b"not a png")
        (src / ".hidden" / "skip.png").write_bytes((src / "0.png").read_bytes())
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            key = f"ffhq/{path.relative_to(src).as_posix()}"
            client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())

        local = _prepare(str(src), tmp_path / "local", server, tmp_path)
        assert local.returncode == 0, local.stderr[-3000:]
        remote = _prepare(f"s3://{BUCKET}/ffhq", tmp_path / "remote", server, tmp_path)
        assert remote.returncode == 0, remote.stderr[-3000:]
        assert _files(tmp_path / "remote") == _files(tmp_path / "local")
        manifests = [
            json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("local", "remote")
        ]
        assert manifests[1]["source"] == f"s3://{BUCKET}/ffhq"
        assert {**manifests[1], "source": None} == {**manifests[0], "source": None}
        assert "broken.png" in remote.stdout and "skip.png" not in remote.stdout
        again = _prepare(f"s3://{BUCKET}/ffhq", tmp_path / "remote", server, tmp_path)
        assert again.returncode == 0 and "(3 already done)" in again.stdout, again.stdout

        for bad in (f"s3://{BUCKET}/nothing-here", "s3://no-such-bucket/ffhq"):
            out = _prepare(bad, tmp_path / "bad", server, tmp_path)
            lines = [line for line in out.stderr.splitlines() if line.strip()]
            assert out.returncode == 2, out.stderr[-3000:]
            assert len(lines) == 1 and lines[0].startswith(f"error: --src {bad}"), lines
            assert not (tmp_path / "bad").exists()
    finally:
        left = server.stop()
    assert not left, "moto server processes survived"
