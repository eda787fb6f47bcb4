"""Fetch torchvision's ImageNet VGG19 file: the URL torchvision uses, hash-checked, atomic.

The transfer is ``torch.hub.download_url_to_file``: it streams into a temporary file next to the
destination, checks the sha256 and only then moves it over the destination, so the destination
never holds a partial or wrong file, and its ``finally`` removes the temporary file whatever
fails (network, a short transfer, a wrong hash, a full disk, Ctrl-C or SIGTERM in the CLI). Here
around it: which URL and hash, one-line errors, a socket timeout (torch.hub sets none), the
folders this call made removed again on failure, and the temporary files of killed downloads
(SIGKILL, power loss) removed once stale.

The hash is torchvision's full sha256 of its file, a mirror's ``--sha256``, or else
torchvision's convention (the hex digits between "-" and "." in the file name start the file's
sha256); a mirror (`--url`, e.g. an internal server on a cluster without internet) whose file
name has none needs ``--sha256``.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ttsr.errors import UsageError, first_line
from ttsr.vgg.weights import TORCHVISION_FILE, TORCHVISION_SHA256, TORCHVISION_URL, cache_path

CHUNK = 1 << 20
TIMEOUT_S = 60.0  # per socket operation, not for the whole transfer
# A download writes at least every TIMEOUT_S: a temporary file untouched this long is stale.
STALE_S = 600.0
_NAME_HASH = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's rule for the hash part of a file name


class DownloadError(UsageError):
    """The download failed; nothing was written. The message is one line."""


@dataclass(frozen=True)
class Source:
    url: str
    sha256: str | None  # the full digest, when known
    name_prefix: str | None  # torchvision's convention: the hash part of the file name

    def matches(self, digest: str) -> bool:
        return digest.startswith(self.expected())

    def expected(self) -> str:
        """The full digest, or else the start of it that the file name gives."""
        return self.sha256 or self.name_prefix or ""


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


def _remove_stale_parts(dest: Path) -> None:
    """torch.hub's temporary files for ``dest`` (``<dest>.<hex>.partial``) that no download has
    written to for ``STALE_S``: left by a killed process."""
    for part in dest.parent.glob(f"{dest.name}.*.partial"):
        try:
            if time.time() - part.stat().st_mtime > STALE_S:
                part.unlink()
        except FileNotFoundError:
            pass


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
    `progress`: torch.hub's tqdm bar on stderr; `notify` receives one line before the transfer.
    Raises `DownloadError` (one line) on any failure; the destination is then as it was: no
    temporary file is left, nor a folder this call created.
    """
    from torch.hub import download_url_to_file

    src = source(url, sha256)
    dest = destination(to)
    replaced, made, done = False, [], False
    timeout = socket.getdefaulttimeout()
    try:
        if dest.is_file():
            digest = sha256_of(dest)
            if src.matches(digest):
                return Downloaded(dest, digest, fetched=False)
            replaced = True
        made = _make_folders(dest.parent)
        _remove_stale_parts(dest)
        if notify is not None:
            notify(f"downloading {src.url} to {dest}")
        socket.setdefaulttimeout(TIMEOUT_S)
        download_url_to_file(src.url, str(dest), hash_prefix=src.expected(), progress=progress)
        done = True
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"cannot download {src.url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot download {src.url}: {exc.reason}") from None
    except http.client.HTTPException as exc:  # a malformed answer
        raise DownloadError(f"cannot download {src.url}: {first_line(exc)}") from None
    except RuntimeError as exc:  # torch.hub: "invalid hash value (expected ..., got ...)"
        raise DownloadError(
            f"{src.url}: {first_line(exc)}: a short or damaged transfer, or a wrong --sha256; "
            "download discarded"
        ) from None
    except OSError as exc:  # local files (permissions, a full disk), or the connection dropped
        where = exc.filename or src.url
        raise DownloadError(f"{where}: {exc.strerror or first_line(exc)}") from None
    finally:
        socket.setdefaulttimeout(timeout)
        for folder in made if not done else ():
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (someone else's files): keep it and its parents
    return Downloaded(dest, sha256_of(dest), fetched=True, replaced=replaced)
