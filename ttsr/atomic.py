"""All-or-nothing writes: files and whole directories, for checkpoints and data shards.

A reader never sees a half-written file or directory under its final name: everything is
written to a temporary sibling (a name no reader globs), fsynced, and renamed into place, and
the rename itself is made durable by fsyncing the parent directory. A failure at any point
(full disk, exception, SIGKILL) leaves the previous version intact and removes the temporary
one (SIGKILL leaves only the hidden temporary, never a truncated final file).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TMP_MARKER = ".tmp-"


def fsync_path(path: Path) -> None:
    """fsync a file or a directory by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_path_for(path: Path) -> Path:
    """A hidden sibling temp name (readers only open ``*.parquet``, ``*.json``, ``*.pt``)."""
    return path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def replace_atomically(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it over ``final``, fsync the directory: all or nothing on disk."""
    fsync_path(tmp)
    os.replace(tmp, final)
    fsync_path(final.parent)


def write_file_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """``write(f)`` into a temporary sibling of ``path``, then swap it in atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
        replace_atomically(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes_atomically(path: str | Path, data: bytes) -> Path:
    return write_file_atomically(path, lambda f: f.write(data))


def old_name(final: Path) -> Path:
    """Where `write_dir_atomically` parks the previous version during a swap."""
    return final.with_name(f".{final.name}.old")


def write_dir_atomically(final: str | Path, write: Callable[[Path], None]) -> Path:
    """Fill a temporary sibling directory with ``write(tmp)``, fsync it, and swap it in.

    The previous version is renamed aside, the new one renamed into place, then the old one
    removed: at no moment does ``final`` hold a half-written directory. If the process dies
    between the two renames, `resolve_swapped_dir` finds the complete old copy.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}{TMP_MARKER}", dir=final.parent))
    try:
        write(tmp)
        for f in tmp.iterdir():
            fsync_path(f)
        fsync_path(tmp)
        old = old_name(final)
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.rename(final, old)
        os.rename(tmp, final)
        fsync_path(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def resolve_swapped_dir(final: Path, marker: str) -> Path | None:
    """``final`` if it holds ``marker``; else its parked old copy if that does (a crash between
    the two renames of a swap); else None."""
    for candidate in (final, old_name(final)):
        if (candidate / marker).is_file():
            return candidate
    return None
