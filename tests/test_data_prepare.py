"""prepare: bad inputs, deterministic split, resume after interruption, atomic shards."""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ttsr.atomic import TMP_MARKER
from ttsr.data import DataError, prepare
from ttsr.data.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int, *, side: int = 48, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC)
        paths.append(folder / f"img_{i:03d}.png")
        img.save(paths[-1])
    return paths


def read_images(out: Path, size: int) -> dict[str, tuple[str, np.ndarray]]:
    """path -> (split, HWC uint8) over every shard of a size."""
    found = {}
    for shard in sorted((out / f"size={size}").glob("*.parquet")):
        split = shard.name.split("-")[0]
        table = pq.read_table(shard)
        for path, data in zip(
            table.column("path").to_pylist(), table.column("image").to_pylist(), strict=True
        ):
            assert path not in found, f"{path} stored twice"
            found[path] = (split, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    return found


def png16_rgb(path: Path, arr: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_bad_inputs_converted_or_skipped(tmp_path):
    src = tmp_path / "src"
    make_images(src, 1)  # img_000.png, a good one
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    png = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG", quality=95)
    jpg = buf.getvalue()
    (src / "corrupt.png").write_bytes(png[:40] + bytes(rng.integers(0, 256, 500, dtype=np.uint8)))
    (src / "truncated.png").write_bytes(png[: len(png) // 2])
    (src / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (src / "zero.png").write_bytes(b"")
    (src / "text.png").write_text("this is not an image\n")
    (src / "notes.txt").write_text("readme")
    Image.fromarray(np.full((40, 40), 200, np.uint8), "L").save(src / "gray.png")
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 255  # red, but only the left half is opaque; the rest is transparent
    rgba[:, :20, 3] = 255
    Image.fromarray(rgba, "RGBA").save(src / "rgba.png")
    Image.fromarray(np.full((40, 40), 32768, np.uint16)).save(src / "gray16.png")
    png16_rgb(src / "rgb16.png", np.full((40, 40, 3), [65535, 0, 16448], np.uint16))
    wide = np.zeros((40, 90, 3), np.uint8)
    wide[:, :25] = (255, 0, 0)
    wide[:, 25:65] = (0, 255, 0)
    wide[:, 65:] = (0, 0, 255)
    Image.fromarray(wide).save(src / "nonsquare.jpg", quality=100)

    result = prepare(src, tmp_path / "out", sizes=[32], workers=0, progress=False)
    skipped = {s["path"]: s["reason"] for s in result.manifest["skipped"]}
    assert set(skipped) == {
        "corrupt.png",
        "truncated.png",
        "truncated.jpg",
        "zero.png",
        "text.png",
        "notes.txt",
    }
    assert skipped["zero.png"] == "zero-byte file"
    assert "not an image" in skipped["text.png"]
    assert "unsupported extension" in skipped["notes.txt"]
    assert "truncated" in skipped["truncated.png"].lower() or "corrupt" in skipped["truncated.png"]

    images = read_images(tmp_path / "out", 32)
    assert set(images) == {
        "img_000.png",
        "gray.png",
        "rgba.png",
        "gray16.png",
        "rgb16.png",
        "nonsquare.jpg",
    }
    assert all(img.shape == (32, 32, 3) and img.dtype == np.uint8 for _, img in images.values())
    assert np.all(images["gray.png"][1] == 200)
    assert np.all(np.abs(images["gray16.png"][1].astype(int) - 128) <= 1)  # 32768/65535*255
    assert np.abs(images["rgb16.png"][1][16, 16].astype(int) - [255, 0, 64]).max() <= 1
    rgba_out = images["rgba.png"][1]
    assert np.abs(rgba_out[16, 2].astype(int) - [255, 0, 0]).max() <= 2  # opaque red
    assert rgba_out[16, 30].min() >= 250  # transparent -> white background
    centre = images["nonsquare.jpg"][1].astype(int)  # centre crop 40x40 of 90 wide: all green
    assert centre[:, 8:24, 1].min() > 200 and centre[:, 8:24, 0].max() < 60
    notes = {it["path"]: it["notes"] for it in result.manifest["items"]}
    assert "crop 90x40" in notes["nonsquare.jpg"] and "I;16->RGB" in notes["gray16.png"]


def test_split_deterministic_disjoint_and_identical_across_sizes(tmp_path):
    make_images(tmp_path / "src", 40, side=72)
    a = prepare(tmp_path / "src", tmp_path / "a", sizes=[32, 64], workers=0, progress=False)
    by_size = {s: read_images(tmp_path / "a", s) for s in (32, 64)}
    splits = {s: {p: v[0] for p, v in imgs.items()} for s, imgs in by_size.items()}
    assert splits[32] == splits[64]
    assert len(splits[32]) == 40
    train = {p for p, s in splits[32].items() if s == "train"}
    test = {p for p, s in splits[32].items() if s == "test"}
    assert train.isdisjoint(test) and len(train | test) == 40
    assert 2 <= len(test) <= 16  # ~20 %
    manifest_split = {it["path"]: it["split"] for it in a.manifest["items"]}
    assert manifest_split == splits[32]

    # same content under other names, another run, another chunking: same split (content hash)
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for p in (tmp_path / "src").iterdir():
        (renamed / f"zz_{p.name}").write_bytes(p.read_bytes())
    b = prepare(renamed, tmp_path / "b", sizes=[32], workers=2, files_per_shard=7, progress=False)
    split_b = {it["path"][3:]: it["split"] for it in b.manifest["items"]}
    assert split_b == manifest_split
    c = prepare(tmp_path / "src", tmp_path / "c", sizes=[32], seed=1, workers=0, progress=False)
    assert {it["path"]: it["split"] for it in c.manifest["items"]} != manifest_split


def test_duplicates_and_too_small_are_listed(tmp_path):
    src = tmp_path / "src"
    paths = make_images(src, 3, side=48)
    (src / "zzz_copy.png").write_bytes(paths[0].read_bytes())
    make_images(src / "small", 1, side=40, seed=5)
    result = prepare(src, tmp_path / "out", sizes=[32, 44], workers=0, progress=False)
    skipped = {s["path"]: s for s in result.manifest["skipped"]}
    assert skipped["zzz_copy.png"]["reason"] == "duplicate of img_000.png"
    assert skipped["small/img_000.png"]["sizes"] == [44]
    assert "too small" in skipped["small/img_000.png"]["reason"]
    assert set(read_images(tmp_path / "out", 32)) >= {"small/img_000.png"}
    assert "small/img_000.png" not in read_images(tmp_path / "out", 44)
    sizes = result.manifest["sizes"]
    assert sizes["32"]["train"] + sizes["32"]["test"] == 4  # 3 + small, not the copy
    assert sizes["44"]["train"] + sizes["44"]["test"] == 3


def test_resume_after_interrupted_run(tmp_path):
    make_images(tmp_path / "src", 12)
    out = tmp_path / "out"
    kwargs = dict(sizes=[32], workers=0, files_per_shard=4, progress=False)
    first = prepare(tmp_path / "src", out, **kwargs)
    assert first.chunks_total == 3 and first.chunks_resumed == 0
    before = read_images(out, 32)
    # What a kill leaves: a chunk without its receipt, a half-written shard under its final
    # name (impossible with atomic writes, but must still be redone), a stray temp file.
    sdir = out / "size=32"
    (sdir / "_receipts" / "chunk-00001.json").unlink()
    shard = sdir / "train-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:100])
    stray = sdir / f".train-00002.parquet{TMP_MARKER}999-deadbeef"
    stray.write_bytes(b"PAR1 half")
    (out / "manifest.json").unlink()

    second = prepare(tmp_path / "src", out, **kwargs)
    assert second.chunks_resumed == 2
    assert not list(out.rglob(f"*{TMP_MARKER}*"))
    after = read_images(out, 32)  # asserts no path is stored twice
    assert set(after) == set(before)
    assert all(np.array_equal(after[p][1], before[p][1]) for p in before)
    assert read_manifest(out)["sizes"]["32"] == first.manifest["sizes"]["32"]

    third = prepare(tmp_path / "src", out, **kwargs)
    assert third.chunks_resumed == 3
    fourth = prepare(tmp_path / "src", out, **{**kwargs, "sizes": [32, 48]})
    assert fourth.chunks_resumed == 0  # 48 is new for every chunk
    assert set(read_images(out, 48)) == set(before)


@pytest.mark.slow
def test_resume_after_killed_process(tmp_path):
    make_images(tmp_path / "src", 60, side=96)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ttsr.data", "prepare", "--src", str(tmp_path / "src")]
    cmd += ["--out", str(out), "--sizes", "32", "64", "--workers", "1", "--files-per-shard", "2"]
    cmd += ["--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.glob("size=64/_receipts/*.json"))) < 3:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(out.glob("size=64/_receipts/*.json")))
    assert 3 <= done < 30, "the run was not interrupted mid-way"
    assert not (out / "manifest.json").exists()
    result = prepare(
        tmp_path / "src", out, sizes=[32, 64], workers=0, files_per_shard=2, progress=False
    )
    assert result.chunks_resumed >= done - 1
    for size in (32, 64):
        assert len(read_images(out, size)) == 60


def test_changed_parameters_are_refused(tmp_path):
    make_images(tmp_path / "src", 4)
    prepare(tmp_path / "src", tmp_path / "out", sizes=[32], workers=0, progress=False)
    with pytest.raises(DataError, match="seed"):
        prepare(tmp_path / "src", tmp_path / "out", sizes=[32], seed=3, workers=0, progress=False)


def test_bad_source_and_options(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        prepare(tmp_path / "missing", tmp_path / "out", sizes=[32])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        prepare(tmp_path / "empty", tmp_path / "out", sizes=[32])
    make_images(tmp_path / "src", 2)
    with pytest.raises(DataError, match="--sizes"):
        prepare(tmp_path / "src", tmp_path / "out", sizes=[30])
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="no usable images") as excinfo:
        prepare(tmp_path / "junk", tmp_path / "out2", sizes=[32], workers=0, progress=False)
    # the skipped file and its reason are in the one-line error; nothing is left half-written
    assert "a.png: " in str(excinfo.value)
    assert not (tmp_path / "out2").exists()
