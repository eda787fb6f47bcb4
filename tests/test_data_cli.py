"""``python -m ttsr.data``: exit codes, one-line errors, prepare / info output.

The loader benchmark (once ``python -m ttsr.data bench``) is tests/test_bench_loader.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ttsr.data.__main__ import main

REPO = Path(__file__).resolve().parents[1]


def test_missing_and_empty_source_exit_2(tmp_path, capsys):
    assert main(["prepare", "--src", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and err[0].startswith("error:")
    (tmp_path / "empty").mkdir()
    assert main(["prepare", "--src", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "nope")]) == 2
    assert main(["info", str(tmp_path / "empty")]) == 2
    assert "manifest" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "--src", str(tmp_path)])  # --out missing: argparse usage error
    assert exc.value.code == 2


def test_prepare_info(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((40, 40), Image.BICUBIC).save(src / f"{i}.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "out"
    args = ["prepare", "--src", str(src), "--out", str(out), "--sizes", "32", "--workers", "1"]
    assert main([*args, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "skipped files: 1" in printed and "broken.jpg" in printed
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "broken.jpg" in info and "    32 " in info
    row = next(line for line in info.splitlines() if line.strip().startswith("32 "))
    train, test = (int(x) for x in row.split()[1:3])
    assert train + test == 10


@pytest.mark.slow
def test_module_entry_point_exit_code(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ttsr.data",
            "prepare",
            "--src",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing" in proc.stderr


def _one_image_source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(src / "a.png")
    return src


def test_unreachable_address_exit_2_nothing_written(tmp_path, capsys):
    import socket

    src = _one_image_source(tmp_path)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    argv = ["prepare", "--src", str(src), "--out", str(out), "--address", f"127.0.0.1:{port}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith("error: --address 127.0.0.1:") and "ray start" in err[0]
    )
    assert not out.exists()
    assert main([*argv[:-1], "not-an-address"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err and not out.exists()


def test_source_the_workers_cannot_see_exit_2_nothing_written(tmp_path, capsys, monkeypatch):
    """The probe's answer from a node without the shared mount (the probe itself runs for real
    in tests/reliability/test_cluster_prepare.py)."""
    from contextlib import contextmanager

    from tune.execution import prepare_cluster

    @contextmanager
    def fake_connect(address, *, src, out):
        # what connect() does after ray.init, with node 127.0.0.2 lacking the mount
        yield prepare_cluster.check_visible(src, out)

    monkeypatch.setattr(prepare_cluster, "connect", fake_connect)
    monkeypatch.setattr(
        prepare_cluster, "probe_nodes", lambda src, target: [("127.0.0.2", False, True)]
    )
    src, out = _one_image_source(tmp_path), tmp_path / "out"
    argv = ["prepare", "--src", str(src), "--out", str(out), "--address", "auto"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--src {src}: not a folder on node 127.0.0.2" in err[0]
    assert not out.exists()
    monkeypatch.setattr(
        prepare_cluster, "probe_nodes", lambda src, target: [("127.0.0.2", True, False)]
    )
    assert main(argv) == 2
    assert "read-only on node 127.0.0.2" in capsys.readouterr().err and not out.exists()
