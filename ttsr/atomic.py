"""All-or-nothing writes: files and whole directories, for checkpoints and data shards.

Everything is written to a hidden temporary sibling (a name no reader globs), fsynced, renamed
into place, and the parent directory fsynced: a failure at any point (full disk, exception,
SIGKILL) leaves the previous version intact and never a truncated file under the final name.

A full disk is reported as what it is: writers such as ``torch.save`` turn the OSError of a
failed write into their own error ("unexpected pos ..."), so the file handed to ``write`` keeps
the first OSError, and that one is raised, naming the final path (``OSError(ENOSPC, ..., path)``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

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


class _RecordingFile:
    """A binary file that remembers the first OSError its writes raised."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


@contextlib.contextmanager
def open_for_writing(path: Path, *, report_as: Path | None = None) -> Iterator[BinaryIO]:
    """``open(path, "wb")`` whose write failures raise the OSError itself, naming ``report_as``
    (default ``path``)."""
    name = str(report_as or path)
    try:
        with open(path, "wb") as raw:
            f = _RecordingFile(raw)
            try:
                yield f  # type: ignore[misc]
            except Exception as exc:
                if f.error is None or exc is f.error:
                    raise
                raise named_os_error(f.error, name) from exc
    except OSError as exc:
        if exc.errno is None or exc.filename == name:
            raise
        raise named_os_error(exc, name) from exc


def named_os_error(exc: OSError, name: str | Path) -> OSError:
    """``exc`` as a plain ``OSError(errno, strerror, name)``: the file the caller wrote, and the
    system's words for the errno (pyarrow's own text is longer)."""
    why = os.strerror(exc.errno) if exc.errno is not None else (exc.strerror or str(exc))
    return OSError(exc.errno, why, str(name))


def write_file_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """``write(f)`` into a temporary sibling of ``path``, then swap it in atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(path)
    try:
        with open_for_writing(tmp, report_as=path) as f:
            write(f)
        replace_atomically(tmp, path)
    except OSError as exc:  # name the file the caller asked for, not the temporary one
        if exc.errno is None or exc.filename == str(path):
            raise
        raise named_os_error(exc, str(path)) from exc
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
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno is not None:  # name the caller's directory
            raise named_os_error(exc, str(final)) from exc
        raise
    return final


def resolve_swapped_dir(final: Path, marker: str) -> Path | None:
    """``final`` if it holds ``marker``; else its parked old copy if that does (a crash between
    the two renames of a swap); else None."""
    for candidate in (final, old_name(final)):
        if (candidate / marker).is_file():
            return candidate
    return None
