"""Parquet shards (``size=S/{split}-NNNNN.parquet``: columns ``path``, ``sha256`` of the source
file, ``image`` as PNG bytes or raw HWC uint8; format and size in the schema metadata): atomic
writes, and lazy random access that survives DataLoader workers. A truncated, corrupted or
unreadable shard is a one-line `DataError` naming the file and the fix, never a traceback.
"""

from __future__ import annotations

import bisect
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ttsr.atomic import named_os_error, replace_atomically, tmp_path_for
from ttsr.errors import DataError

SHARD_FORMATS = ("png", "raw")
# Small row groups make reading one random image cheap (a row group is the unit of I/O); the
# per-group metadata is a few hundred bytes, nothing next to one image.
ROW_GROUP_SIZE = 4
_MAX_OPEN_FILES = 64  # per process; FFHQ at one size is ~1k shard files, over a typical ulimit


def shard_name(split: str, chunk: int) -> str:
    return f"{split}-{chunk:05d}.parquet"


def write_shard(
    path: Path,
    *,
    paths: list[str],
    hashes: list[str],
    images: list[bytes],
    fmt: str,
    size: int,
) -> int:
    """Write one shard atomically; returns its size in bytes."""
    schema = pa.schema(
        [("path", pa.string()), ("sha256", pa.string()), ("image", pa.binary())],
        metadata={"ttsr.format": fmt, "ttsr.size": str(size)},
    )
    table = pa.table({"path": paths, "sha256": hashes, "image": images}, schema=schema)
    # PNG bytes do not compress further; raw pixels gain ~10-30 % from zstd (see docs/DATA.md).
    image_codec = "NONE" if fmt == "png" else "ZSTD"
    tmp = tmp_path_for(path)
    try:
        pq.write_table(
            table,
            tmp,
            row_group_size=ROW_GROUP_SIZE,
            compression={"path": "ZSTD", "sha256": "NONE", "image": image_codec},
            use_dictionary=False,
        )
        replace_atomically(tmp, path)
    except OSError as exc:  # e.g. a full disk: name the shard (pyarrow's error names no file)
        if exc.errno is None:
            raise
        raise named_os_error(exc, path) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path.stat().st_size


def unusable_shard(path: str | Path, problem: str) -> DataError:
    """The error for a shard that cannot be read: the file, the problem, what to do."""
    first = problem.strip().splitlines()[0] if problem.strip() else "unknown problem"
    return DataError(
        f"{path}: corrupted or truncated shard ({first}); delete it and re-run "
        "`python -m ttsr.data prepare` (same --src, --out) to rebuild it"
    )


@contextmanager
def _reading(path: str) -> Iterator[None]:
    """pyarrow and OS errors while reading ``path`` -> a one-line `DataError` naming it."""
    try:
        yield
    except OSError as exc:
        if exc.errno is not None:  # the OS refused (gone, permissions): not corruption
            raise DataError(f"{path}: cannot read shard ({exc.strerror})") from None
        raise unusable_shard(path, str(exc) or type(exc).__name__) from None
    except pa.ArrowException as exc:
        raise unusable_shard(path, str(exc) or type(exc).__name__) from None


class ShardReader:
    """Random access to the ``image`` column of a list of shard files.

    Files are opened lazily and per process: nothing open is ever pickled into a DataLoader
    worker, and a worker forked after the parent read something reopens its own handles.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = [str(p) for p in paths]
        self.num_rows: list[int] = []
        self._group_starts: list[list[int]] = []
        for p in self.paths:
            with _reading(p):
                meta = pq.read_metadata(p)
            starts, total = [], 0
            for g in range(meta.num_row_groups):
                starts.append(total)
                total += meta.row_group(g).num_rows
            self.num_rows.append(total)
            self._group_starts.append(starts)
        self._open: OrderedDict[int, pq.ParquetFile] = OrderedDict()
        self._pid = os.getpid()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state

    def column(self, name: str) -> list:
        """One small column (``path`` / ``sha256``) of every shard, concatenated."""
        out: list = []
        for p in self.paths:
            with _reading(p):
                out.extend(pq.read_table(p, columns=[name]).column(0).to_pylist())
        return out

    def _file(self, i: int) -> pq.ParquetFile:
        if self._pid != os.getpid():  # forked: handles belong to the parent
            self._open, self._pid = OrderedDict(), os.getpid()
        f = self._open.get(i)
        if f is None:
            with _reading(self.paths[i]):
                f = pq.ParquetFile(self.paths[i], memory_map=True)
            self._open[i] = f
            if len(self._open) > _MAX_OPEN_FILES:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(i)
        return f

    def read_image(self, file: int, row: int) -> bytes:
        starts = self._group_starts[file]
        group = bisect.bisect_right(starts, row) - 1
        with _reading(self.paths[file]):
            table = self._file(file).read_row_group(group, columns=["image"])
            return table.column(0)[row - starts[group]].as_py()
