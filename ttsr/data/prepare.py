"""``prepare``: a folder of images -> Parquet shards at several sizes, plus a manifest.

Chunks of ``files_per_shard`` sorted source files; one job per chunk decodes each file once and
writes its shards for every size still missing, then a receipt per size (docs/DATA.md). Jobs run
in a local process pool, or through a ``runner`` (`tune.execution.prepare_cluster`: Ray tasks).
Everything is written to a temp name, fsynced and renamed: a killed run leaves the old file, the
new one, or a temp file the next run deletes.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ttsr.atomic import TMP_MARKER
from ttsr.cpus import usable_cpus
from ttsr.data import remote
from ttsr.data.images import (
    IMAGE_EXTENSIONS,
    UnusableImage,
    decode_rgb_square,
    encode_png,
    resize_to,
)
from ttsr.data.manifest import (
    SPLITS,
    assign_split,
    check_params,
    chunk_done,
    merge_receipts,
    receipt_path,
    size_dir,
    write_json_atomically,
)
from ttsr.data.remote import is_uri
from ttsr.data.shards import SHARD_FORMATS, shard_name, write_shard
from ttsr.errors import DataError, first_line

DEFAULT_SIZES = (160, 256, 384, 512)
DEFAULT_FORMAT = "png"
FILES_PER_SHARD = 128
PNG_LEVEL = 1  # zlib level: 6 costs ~3x the encode time for ~3 % smaller shards (docs/DATA.md)
LOCK_NAME = ".lock"


@dataclass(frozen=True)
class PrepareResult:
    out: Path
    manifest: dict[str, Any]
    chunks_total: int
    chunks_resumed: int  # chunks already finished by an earlier run for every size
    seconds: float


@dataclass(frozen=True)
class ChunkJob:
    src: str
    out: str
    chunk: int
    files: list[str]
    sizes: list[int]  # the sizes this chunk still lacks
    seed: int
    test_fraction: float
    fmt: str
    allow_upscale: bool


# Runs every job with `process_chunk` (each exactly once to completion, in any order and place),
# counting images on a progress bar when ``progress``; raises when one fails.
Runner = Callable[[list[ChunkJob], bool], None]


@contextmanager
def folder_lock(path: Path):
    """Exclusive advisory lock (fcntl) on ``path``; blocks until the holder is done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:  # not left to the close: forked workers share the open file, and its lock
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def prepare(
    src: Path | str,
    out: Path | str,
    *,
    sizes: tuple[int, ...] | list[int] = DEFAULT_SIZES,
    test_fraction: float = 0.2,
    limit: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    fmt: str = DEFAULT_FORMAT,
    files_per_shard: int = FILES_PER_SHARD,
    allow_upscale: bool = False,
    progress: bool = True,
    runner: Runner | None = None,
) -> PrepareResult:
    """Prepare ``src`` into ``out`` (see module docstring); raises `DataError` on bad options.

    ``workers``: processes (None = the CPUs this process may use, `ttsr.cpus.usable_cpus`;
    0 or 1 = in this process, no pool). ``runner``: runs the chunk jobs instead of the local
    pool (``workers`` is then unused).
    ``allow_upscale``: bicubic-upscale images smaller than a size instead of skipping them
    (used by the built-in sample set, whose crops are smaller than 512 px).
    """
    start = time.perf_counter()
    src = src if is_uri(src) else Path(src)  # s3://... stays a string (ttsr.data.remote)
    out = Path(out)
    sizes = sorted(set(sizes))
    if not sizes or any(s <= 0 or s % 4 for s in sizes):
        raise DataError(f"--sizes: every size must be a positive multiple of 4 (got {sizes})")
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"--test-fraction: must be in [0, 1) (got {test_fraction})")
    if fmt not in SHARD_FORMATS:
        raise DataError(f"--format: must be one of {', '.join(SHARD_FORMATS)} (got {fmt!r})")
    if limit is not None and limit < 1:
        raise DataError(f"--limit: must be >= 1 (got {limit})")
    files = _source_files(src, out)
    if not files:
        raise DataError(f"--src {src}: folder is empty (no files found)")
    if limit is not None:
        files = files[:limit]

    params = {
        "seed": seed,
        "test_fraction": test_fraction,
        "format": fmt,
        "files_per_shard": files_per_shard,
        "allow_upscale": allow_upscale,
    }
    fresh_out = not out.exists() or not any(out.iterdir())
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out / LOCK_NAME):
        check_params(out, params)
        for path in out.rglob(f"*{TMP_MARKER}*"):  # under the lock: no live writer owns them
            path.unlink(missing_ok=True)
        chunks = [files[i : i + files_per_shard] for i in range(0, len(files), files_per_shard)]
        jobs, options = [], (seed, test_fraction, fmt, allow_upscale)
        for k, chunk_files in enumerate(chunks):
            if missing := [s for s in sizes if not chunk_done(out, s, k, chunk_files)]:
                jobs.append(ChunkJob(str(src), str(out), k, chunk_files, missing, *options))
        if runner is None:
            _run_jobs(jobs, workers, progress)
        else:
            runner(jobs, progress)
        manifest = merge_receipts(out, params, src if is_uri(src) else str(src.resolve()))
    usable = sum(v["train"] + v["test"] for v in manifest["sizes"].values())
    if usable == 0:
        skipped = manifest["skipped"]
        reasons = "; ".join(f"{Path(s['path']).name}: {s['reason']}" for s in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        if fresh_out:
            # Nothing usable came of this call: leave no manifest or empty shard that a later
            # run could take for a prepared dataset.
            shutil.rmtree(out, ignore_errors=True)
        raise DataError(
            f"--src {src}: no usable images ({len(skipped)} files skipped: {reasons}{more})"
        )
    return PrepareResult(
        out, manifest, len(chunks), len(chunks) - len(jobs), time.perf_counter() - start
    )


def _source_files(src: Path | str, out: Path) -> list[str]:
    """Every regular file under ``src`` but in ``out`` (relative POSIX paths, sorted; hidden
    folders ignored); a DataError when ``src`` is no folder."""
    if is_uri(src):
        try:
            found = remote.is_folder(src)
        except (OSError, ValueError) as exc:  # a bad URI, unknown bucket, no credentials
            raise DataError(f"--src {src}: {first_line(exc)}") from exc
        if not found:
            raise DataError(f"--src {src}: no such folder")
        return remote.list_files(src)
    if not src.is_dir():
        raise DataError(f"--src {src}: no such folder")
    found: list[str] = []
    out = out.resolve()
    for root, dirs, files in os.walk(src):
        root_path = Path(root)
        dirs[:] = [d for d in dirs if not d.startswith(".") and (root_path / d).resolve() != out]
        for name in files:
            if (root_path / name).is_file():
                found.append((root_path / name).relative_to(src).as_posix())
    return sorted(found)


def _run_jobs(jobs: list[ChunkJob], workers: int | None, progress: bool) -> None:
    total = sum(len(j.files) for j in jobs)
    workers = usable_cpus() if workers is None else workers
    with tqdm(total=total, unit="img", desc="prepare", disable=not progress or not jobs) as bar:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                process_chunk(job)
                bar.update(len(job.files))
            return
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            futures = {pool.submit(process_chunk, job): job for job in jobs}
            try:
                for future in as_completed(futures):
                    future.result()
                    bar.update(len(futures[future].files))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise


def process_chunk(job: ChunkJob) -> None:
    """Decode each file once, write this chunk's shards for every missing size, then receipts."""
    out = Path(job.out)
    items: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    # (size, split) -> the shard's columns: paths, hashes, images
    shards: dict[tuple[int, str], tuple[list, list, list]] = {
        (s, split): ([], [], []) for s in job.sizes for split in SPLITS
    }
    for rel in job.files:
        suffix = Path(rel).suffix.lower()
        if suffix not in IMAGE_EXTENSIONS:
            skipped.append({"path": rel, "reason": f"unsupported extension {suffix or '(none)'}"})
            continue
        try:
            if is_uri(job.src):
                data = remote.read_bytes(job.src, rel)
            else:
                data = (Path(job.src) / rel).read_bytes()
        except OSError as exc:
            skipped.append({"path": rel, "reason": f"unreadable: {exc.strerror or exc}"})
            continue
        try:
            img, notes = decode_rgb_square(data)
        except UnusableImage as exc:
            skipped.append({"path": rel, "reason": str(exc)})
            continue
        digest = hashlib.sha256(data).hexdigest()
        split = assign_split(digest, seed=job.seed, test_fraction=job.test_fraction)
        side = img.size[0]
        item = {"path": rel, "sha256": digest, "split": split, "side": side, "notes": notes}
        for size in job.sizes:
            if side < size and not job.allow_upscale:
                skipped.append(
                    {"path": rel, "reason": f"too small ({side} px < {size})", "per_size": size}
                )
                continue
            resized = resize_to(img, size)
            payload = encode_png(resized, PNG_LEVEL) if job.fmt == "png" else resized.tobytes()
            for column, value in zip(shards[size, split], (rel, digest, payload), strict=True):
                column.append(value)
        items.append(item)
    for size in job.sizes:
        directory = size_dir(out, size)
        directory.mkdir(parents=True, exist_ok=True)
        shard_bytes = {}
        for split in SPLITS:
            paths, hashes, images = shards[size, split]
            path = directory / shard_name(split, job.chunk)
            shard_bytes[split] = write_shard(
                path, paths=paths, hashes=hashes, images=images, fmt=job.fmt, size=size
            )
        written = {*shards[size, "train"][0], *shards[size, "test"][0]}
        size_skipped = [
            {"path": sk["path"], "reason": sk["reason"], "per_size": "per_size" in sk}
            for sk in skipped
            if sk.get("per_size", size) == size
        ]
        receipt = {
            "chunk": job.chunk,
            "size": size,
            "files": job.files,
            "items": [it for it in items if it["path"] in written],
            "skipped": size_skipped,
            "shard_bytes": shard_bytes,
        }
        # Last: its presence is what marks the chunk finished at this size.
        write_json_atomically(receipt_path(out, size, job.chunk), receipt)
