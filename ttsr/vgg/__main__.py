"""``python -m ttsr.vgg download [--to PATH] | check [PATH]``: get and inspect the VGG19 weights.
The CLI lives here, not in ``ttsr/vgg/__init__.py``, so ``python -m`` imports the package once.

The transfer is ``torch.hub.download_url_to_file`` (a temporary file next to the destination,
hash-checked, then moved into place, and removed whatever fails). Around it: which URL and hash
(torchvision's sha256, a mirror's ``--sha256``, or torch.hub's convention: the hex digits between
"-" and "." in the file name start the sha256), one-line errors, a socket timeout (torch.hub sets
none), and removing the folders a failed call made and stale temporary files of killed downloads.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ttsr.cli_errors import DEBUG_HELP, run_cli
from ttsr.errors import UsageError, first_line
from ttsr.vgg import (
    ENV_VAR,
    TORCHVISION_FILE,
    TORCHVISION_SHA256,
    TORCHVISION_URL,
    VGGWeightsError,
    cache_path,
    load_features_state,
    missing_weights_message,
    resolve,
)

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
    sha = sha256.strip().lower() if sha256 is not None else None
    if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise DownloadError(f"--sha256: not a sha256 hex digest (got {sha!r})")
    if sha is None and url == TORCHVISION_URL:
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
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _remove_stale_parts(dest: Path) -> None:
    """torch.hub's temporary files for ``dest`` (``<dest>.<hex>.partial``) that no download has
    written to for ``STALE_S``: left by a killed process."""
    for part in dest.parent.glob(f"{dest.name}.*.partial"):
        try:
            if time.time() - part.stat().st_mtime > STALE_S:
                part.unlink()
        except FileNotFoundError:
            pass


def download(
    to: str | Path | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = False,
) -> Downloaded:
    """Put torchvision's ImageNet VGG19 file (or a mirror's, `source`) at `destination(to)`
    unless a valid one is there, saying so before the transfer. Raises
    `DownloadError` (one line) on any failure, leaving the destination as it was."""
    from torch.hub import download_url_to_file

    src = source(url, sha256)
    dest = destination(to)
    replaced, made, done = False, [], False
    timeout = socket.getdefaulttimeout()
    try:
        if dest.is_file():
            digest = sha256_of(dest)
            if digest.startswith(src.expected()):
                return Downloaded(dest, digest, fetched=False)
            replaced = True
        made = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]  # deepest first
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_parts(dest)
        print(f"downloading {src.url} to {dest}", flush=True)
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


class _Stopped(KeyboardInterrupt):
    """SIGTERM/SIGHUP (args: the signal number), raised in the main thread so that the download
    cleans up after itself."""


def _stop(signum: int, _frame: object) -> None:
    raise _Stopped(signum)


def cmd_download(args: argparse.Namespace) -> None:
    progress = sys.stderr.isatty() and not args.no_progress
    result = download(args.to, url=args.url, sha256=args.sha256, progress=progress)
    size = f"{result.path.stat().st_size / 2**20:.0f} MiB"
    if not result.fetched:
        print(f"already present and verified: {result.path} ({size}, sha256 {result.sha256})")
    else:
        was = " (replacing a file with the wrong sha256)" if result.replaced else ""
        print(f"saved {result.path}{was} ({size}, sha256 {result.sha256} verified)")
    env = os.environ.get(ENV_VAR)  # where training looks when not told: this, else the cache
    if (Path(env).expanduser() if env else cache_path()).absolute() != result.path.absolute():
        print(f"training looks elsewhere; to use this file: export {ENV_VAR}={result.path}")


def cmd_check(args: argparse.Namespace) -> None:
    found = resolve(args.path, source="the command line")
    if found is None:
        raise VGGWeightsError(missing_weights_message())
    print(f"{found.path} (from {found.source})")
    tensors = load_features_state(found)
    print(f"valid: torchvision VGG19 `features` weights ({len(tensors)} tensors)")
    digest = sha256_of(found.path)
    if digest == TORCHVISION_SHA256:
        print(f"sha256 {digest}: torchvision's ImageNet file {TORCHVISION_FILE}")
    else:
        print(
            f"sha256 {digest}: not torchvision's ImageNet file {TORCHVISION_FILE} "
            "(another VGG19 checkpoint)"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ttsr.vgg",
        description="torchvision's ImageNet VGG19 weights: fetch them, or check what is used.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "download",
        help="fetch torchvision's file (hash-checked, written atomically)",
        description=(
            "Fetch torchvision's ImageNet VGG19 file from the URL torchvision uses, check its "
            "sha256 and rename it into place (never a partial file). Default destination: "
            "torchvision's cache, where training finds it."
        ),
    )
    p.add_argument(
        "--to",
        type=Path,
        metavar="PATH",
        help=f"a folder (the file keeps the name {TORCHVISION_FILE}) or a .pth file path "
        f"(default: {cache_path().parent})",
    )
    p.add_argument(
        "--url",
        metavar="URL",
        help="a mirror of the file (e.g. an internal server on a cluster without internet); "
        "default: torchvision's URL",
    )
    p.add_argument(
        "--sha256",
        metavar="HEX",
        help="the mirror's full sha256 (default: torchvision's; for another --url, the hash "
        "in its file name)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_download)
    p = sub.add_parser(
        "check",
        aliases=["status"],
        help="which file training would use, and whether it is valid",
        description=(
            f"Say which file the lookup uses (PATH, ${ENV_VAR}, torchvision's cache), load it "
            "fully and compare its sha256 with torchvision's."
        ),
    )
    p.add_argument("path", nargs="?", type=Path, help="a file to check instead of the lookup")
    p.set_defaults(func=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Errors are one line and an exit code (`ttsr.cli_errors`); ``--debug`` shows tracebacks.
    SIGTERM/SIGHUP interrupt like Ctrl-C (exit 128 + the signal) so no partial file is left."""
    previous = {}
    if threading.current_thread() is threading.main_thread():  # only there can Python catch them
        previous = {
            signum: signal.signal(signum, _stop) for signum in (signal.SIGTERM, signal.SIGHUP)
        }
    try:
        return run_cli(lambda: _main(argv), argv=argv)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt as exc:
        if args.debug:
            raise
        print("error: interrupted (no partial file is left)", file=sys.stderr)
        return 128 + (exc.args[0] if isinstance(exc, _Stopped) else signal.SIGINT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
