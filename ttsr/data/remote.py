"""``--src`` on object storage (``s3://bucket/prefix``, ``gs://...``) through pyarrow's
filesystems: listing, reading, and "is it a folder". Credentials and the endpoint come from
pyarrow's usual sources (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``
for S3-compatible servers such as MinIO). Local paths never come here (`is_uri`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path, PurePosixPath

from pyarrow import fs as pafs


def is_uri(src: str | Path) -> bool:
    """A ``scheme://`` source (a Path never is one: it would have collapsed the ``//``)."""
    return isinstance(src, str) and "://" in src


@lru_cache(maxsize=8)
def _resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    # One filesystem client per URI and process (each chunk reads 128 files through it).
    filesystem, root = pafs.FileSystem.from_uri(uri)
    return filesystem, root.rstrip("/")


def is_folder(uri: str) -> bool:
    """Whether ``uri`` names a folder (a prefix with objects under it)."""
    filesystem, root = _resolve(uri)
    return filesystem.get_file_info(root).type == pafs.FileType.Directory


def list_files(uri: str) -> list[str]:
    """Every object under ``uri`` (relative POSIX paths, sorted); hidden folders ignored, as
    as for a local ``--src``."""
    filesystem, root = _resolve(uri)
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    found = []
    for info in filesystem.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        rel = PurePosixPath(info.path).relative_to(root)
        if not any(part.startswith(".") for part in rel.parts[:-1]):
            found.append(rel.as_posix())
    return sorted(found)


def read_bytes(uri: str, rel: str) -> bytes:
    filesystem, root = _resolve(uri)
    with filesystem.open_input_stream(f"{root}/{rel}") as stream:
        return stream.readall()
