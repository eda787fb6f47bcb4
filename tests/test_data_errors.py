"""A damaged prepared folder fails with one `DataError` line that names the file and what to do:
truncated or overwritten shards, a shard whose stored image is garbage, an unreadable or
malformed manifest.json; also when the damage is met inside a DataLoader worker. Following the
advice (delete the shard, re-run prepare) gives a working dataset again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from ttsr.data import DataError, open_dataset, prepare
from ttsr.data.shards import write_shard

SIZE = 32


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, Path]:
    """(source folder, prepared folder) with 12 images at 32 px, 4 per shard."""
    root = tmp_path_factory.mktemp("damaged")
    src = root / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        Image.fromarray(small).resize((48, 48), Image.Resampling.BICUBIC).save(src / f"{i}.png")
    prepare(src, root / "out", sizes=[SIZE], files_per_shard=4, workers=0, progress=False)
    return src, root / "out"


@pytest.fixture
def prepared(pristine, tmp_path) -> Path:
    """A private copy of the prepared folder, free to damage."""
    out = tmp_path / "out"
    shutil.copytree(pristine[1], out)
    return out


def _shard(out: Path) -> Path:
    return sorted((out / f"size={SIZE}").glob("train-*.parquet"))[0]


def _read_all(out: Path, *, workers: int = 0) -> None:
    ds = open_dataset(out, size=SIZE, split="train")
    for _ in DataLoader(ds, batch_size=2, num_workers=workers):
        pass


def _one_line(exc: pytest.ExceptionInfo, *parts: str) -> str:
    text = str(exc.value)
    assert len(text.splitlines()) == 1, text
    for part in parts:
        assert part in text, (part, text)
    return text


def test_truncated_shard_names_the_file_and_the_fix(prepared):
    shard = _shard(prepared)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as exc:
        open_dataset(prepared, size=SIZE, split="train")
    _one_line(exc, str(shard), "corrupted or truncated shard", "ttsr.data prepare", "delete it")


def test_empty_and_overwritten_shards_raise_data_error_only(prepared):
    """Zero bytes at open; garbage over the middle of the file at open or at the first read of
    an item (wherever it lands: page headers, compressed columns or PNG bytes)."""
    shards = sorted((prepared / f"size={SIZE}").glob("train-*.parquet"))
    shards[0].write_bytes(b"")
    with pytest.raises(DataError) as exc:
        open_dataset(prepared, size=SIZE, split="train")
    _one_line(exc, str(shards[0]))

    shards[0].unlink()  # now only the overwritten one is damaged
    data = bytearray(shards[1].read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = np.random.default_rng(1).bytes(third)
    shards[1].write_bytes(bytes(data))
    with pytest.raises(DataError) as exc:
        _read_all(prepared)
    _one_line(exc, str(shards[1]), "ttsr.data prepare")


def _garble_last_image(shard: Path) -> int:
    """Rewrite ``shard`` as a valid Parquet file whose last stored PNG keeps its header but has
    zeros for pixels; returns that row."""
    table = pq.read_table(shard)
    meta = table.schema.metadata
    images = table.column("image").to_pylist()
    row = len(images) - 1
    images[row] = images[row][:40] + b"\0" * (len(images[row]) - 40)
    write_shard(
        shard,
        paths=table.column("path").to_pylist(),
        hashes=table.column("sha256").to_pylist(),
        images=images,
        fmt=meta[b"ttsr.format"].decode(),
        size=int(meta[b"ttsr.size"]),
    )
    return row


def test_garbage_image_in_a_valid_shard_names_file_and_row(prepared):
    shard = _shard(prepared)
    row = _garble_last_image(shard)
    ds = open_dataset(prepared, size=SIZE, split="train")  # opens: the damage is in the pixels
    with pytest.raises(DataError) as exc:
        for i in range(len(ds)):
            ds[i]
    _one_line(exc, str(shard), f"row {row} ", "not a valid png image", "ttsr.data prepare")


def test_damage_met_in_a_dataloader_worker_stays_one_line(prepared):
    shard = _shard(prepared)
    _garble_last_image(shard)
    with pytest.raises(DataError) as exc:
        _read_all(prepared, workers=1)
    text = _one_line(exc, str(shard), "not a valid png image")
    assert "Traceback" not in text and "worker" not in text


def test_following_the_advice_rebuilds_the_shard(pristine, prepared):
    src, _ = pristine
    shard = _shard(prepared)
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(DataError):
        open_dataset(prepared, size=SIZE, split="train")
    shard.unlink()
    prepare(src, prepared, sizes=[SIZE], files_per_shard=4, workers=0, progress=False)
    _read_all(prepared)


@pytest.mark.parametrize(
    "content, problem",
    [
        (b'{"version": 1, "sizes": {"32": {"tr', "corrupted or truncated manifest"),
        (b"", "corrupted or truncated manifest"),
        (b"\xff\xfe\x00garbage", "corrupted or truncated manifest"),
        (b"[1, 2, 3]", "a JSON list, not an object"),
        (b'{"version": 1}', "'format' missing"),
    ],
    ids=["truncated", "empty", "binary", "list", "fields-missing"],
)
def test_bad_manifest_names_the_file_and_the_fix(prepared, content, problem):
    (prepared / "manifest.json").write_bytes(content)
    with pytest.raises(DataError) as exc:
        open_dataset(prepared, size=SIZE, split="train")
    _one_line(exc, str(prepared / "manifest.json"), problem, "ttsr.data prepare")


def test_manifest_with_wrong_field_types(prepared):
    path = prepared / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["sizes"] = {"32": {"train": "many"}}
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError) as exc:
        open_dataset(prepared, size=SIZE, split="train")
    _one_line(exc, "sizes.32")


def test_rerunning_prepare_rebuilds_a_broken_manifest(pristine, prepared):
    src, _ = pristine
    (prepared / "manifest.json").write_text("{")
    prepare(src, prepared, sizes=[SIZE], files_per_shard=4, workers=0, progress=False)
    _read_all(prepared)
