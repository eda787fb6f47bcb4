"""Fetch torchvision's ImageNet VGG19 file: the URL torchvision uses, hash-checked, atomic.

The file is streamed into a hidden temporary file next to its destination and renamed over it
only once its sha256 is right, so the destination never holds a partial or wrong file, whatever
fails (network, a short transfer, a wrong hash, a full disk, Ctrl-C or SIGTERM in the CLI). A
temporary file left by a killed process (SIGKILL, power loss) is removed by the next download on
the same host once that process is gone.

The hash is checked twice, as far as it is known: torchvision's convention (the hex digits between
"-" and "." in the file name start the file's sha256) and the full sha256 of torchvision's file.

A mirror (`--url`, e.g. an internal server on a cluster without internet) comes with its
`--sha256`; without one only the hash in its file name is checked, and a name without one is
refused.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

from ttsr.errors import UsageError
from ttsr.vgg.weights import TORCHVISION_FILE, TORCHVISION_SHA256, TORCHVISION_URL, cache_path

CHUNK = 1 << 20
TIMEOUT_S = 60.0  # per socket operation, not for the whole transfer
_NAME_HASH = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's rule for the hash part of a file name


class DownloadError(UsageError):
    """The download failed; nothing was written. The message is one line."""


@dataclass(frozen=True)
class Source:
    url: str
    sha256: str | None  # the full digest, when known
    name_prefix: str | None  # torchvision's convention: the hash part of the file name

    def matches(self, digest: str) -> bool:
        return (self.sha256 is None or digest == self.sha256) and (
            self.name_prefix is None or digest.startswith(self.name_prefix)
        )

    def expected(self) -> str:
        return self.sha256 or f"{self.name_prefix}..."


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    fetched: bool  # False: the file was already there and valid
    replaced: bool = False  # True: a file with the wrong hash was there and is now replaced


def source(url: str | None = None, sha256: str | None = None) -> Source:
    """What to fetch and what its hash must be: torchvision's file, or a mirror's ``url`` with
    its ``sha256`` (else the hash in its file name)."""
    url = url or TORCHVISION_URL
    sha = sha256
    if sha is not None:
        sha = sha.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise DownloadError(f"--sha256: not a sha256 hex digest (got {sha!r})")
    elif url == TORCHVISION_URL:
        sha = TORCHVISION_SHA256
    match = _NAME_HASH.search(Path(urlparse(url).path).name)
    prefix = match.group(1) if match else None
    if sha is None and prefix is None:
        raise DownloadError(f"--url {url}: no hash in its file name; give --sha256")
    return Source(url, sha, prefix)


def destination(to: str | Path | None) -> Path:
    """`--to`: an existing folder or a path without a .pth/.pt suffix is a folder (the file keeps
    torchvision's name in it); a .pth/.pt path is the file itself. None: torchvision's cache."""
    if to is None:
        return cache_path()
    to = Path(to).expanduser().absolute()
    if to.is_dir() or to.suffix not in (".pth", ".pt"):
        return to / TORCHVISION_FILE
    return to


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _part_name(dest: Path, host: str, pid: int) -> Path:
    return dest.with_name(f".{dest.name}.{host}.{pid}.part")


def _remove_stale_parts(dest: Path, host: str) -> None:
    """Temporary files of processes on this host that no longer run (killed mid-transfer)."""
    for part in dest.parent.glob(f".{dest.name}.{host}.*.part"):
        pid = part.name.rsplit(".", 2)[1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            part.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, someone else's


def _open(url: str) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": "ttsr-tune"})
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot download {url}: {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"cannot download {url}: {exc or type(exc).__name__}") from None


def _save(response: http.client.HTTPResponse, url: str, part: Path, *, progress: bool) -> str:
    """Stream the body into `part` (created here); return the sha256 of what was received."""
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    h, got = hashlib.sha256(), 0
    # 0o644 minus the umask, like any file the user writes (not mkstemp's 0o600): a cache that an
    # image or a shared volume provides must be readable by the users who train.
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with (
        os.fdopen(fd, "wb") as f,
        tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress
        ) as bar,
    ):
        while True:
            try:
                chunk = response.read(CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                why = str(exc) or type(exc).__name__
                raise DownloadError(f"transfer of {url} failed after {got} bytes ({why})") from None
            if not chunk:
                break
            f.write(chunk)
            h.update(chunk)
            got += len(chunk)
            bar.update(len(chunk))
        f.flush()
        os.fsync(f.fileno())
    # http.client returns a short body without an error when the server closes early.
    if total is not None and got != total:
        raise DownloadError(f"transfer of {url} interrupted: got {got} of {total} bytes")
    return h.hexdigest()


def _make_folders(folder: Path) -> list[Path]:
    """mkdir -p; returns the folders it created, deepest first."""
    made = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return made


def download(
    to: str | Path | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = False,
    notify: Callable[[str], None] | None = None,
) -> Downloaded:
    """Put torchvision's ImageNet VGG19 file at `destination(to)` unless a valid one is there.

    `url`/`sha256`: a mirror instead of torchvision's server (`source`).
    `progress`: a tqdm bar on stderr; `notify` receives one line when the server has answered.
    Raises `DownloadError` (one line) on any failure; the destination is then as it was: no
    temporary file is left, nor a folder this call created.
    """
    src = source(url, sha256)
    dest = destination(to)
    host = socket.gethostname()
    part = _part_name(dest, host, os.getpid())
    replaced, made, done = False, [], False
    try:
        if dest.is_file():
            digest = sha256_of(dest)
            if src.matches(digest):
                return Downloaded(dest, digest, fetched=False)
            replaced = True
        with _open(src.url) as response:
            if notify is not None:
                length = response.headers.get("Content-Length")
                size = f" ({int(length) / 2**20:.0f} MiB)" if length and length.isdigit() else ""
                notify(f"downloading {src.url}{size} to {dest}")
            made = _make_folders(dest.parent)
            _remove_stale_parts(dest, host)
            part.unlink(missing_ok=True)  # ours by name: a killed process had our pid
            digest = _save(response, src.url, part, progress=progress)
        if not src.matches(digest):
            raise DownloadError(
                f"sha256 of {src.url} is {digest}, expected {src.expected()}: download discarded"
            )
        os.replace(part, dest)
        done = True
    except OSError as exc:  # local files: permissions, a full disk, a read-only file system
        where = exc.filename or dest
        raise DownloadError(f"{where}: {exc.strerror or exc}") from None
    finally:
        part.unlink(missing_ok=True)  # gone already after a successful rename
        for folder in made if not done else ():
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (someone else's files): keep it and its parents
    return Downloaded(dest, digest, fetched=True, replaced=replaced)
