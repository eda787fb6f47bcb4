"""``python -m ttsr.vgg download [--to PATH] | check [PATH]``: get and inspect the VGG19 weights.

The CLI lives here, not in ``ttsr/vgg/__init__.py``: ``python -m ttsr.vgg`` then imports the
package once, as ``ttsr.vgg``, and runs only this file as ``__main__``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from ttsr.cli_errors import DEBUG_HELP, run_cli
from ttsr.vgg.download import download, sha256_of
from ttsr.vgg.weights import (
    ENV_VAR,
    TORCHVISION_FILE,
    TORCHVISION_SHA256,
    VGGWeightsError,
    cache_path,
    load_features_state,
    missing_weights_message,
    resolve,
)


class _Stopped(BaseException):
    """SIGTERM/SIGHUP, raised in the main thread so that the download cleans up after itself."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, _frame: object) -> None:
    raise _Stopped(signum)


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def _found_by_lookup(path: Path) -> bool:
    """Whether training uses `path` when not told otherwise: $TTSR_VGG19_WEIGHTS, else the cache."""
    env = os.environ.get(ENV_VAR)
    used = Path(env).expanduser() if env else cache_path()
    return used.absolute() == path.absolute()


def cmd_download(args: argparse.Namespace) -> None:
    progress = sys.stderr.isatty() and not args.no_progress
    result = download(
        args.to,
        url=args.url,
        sha256=args.sha256,
        progress=progress,
        notify=lambda text: print(text, flush=True),
    )
    size = _mib(result.path.stat().st_size)
    if not result.fetched:
        print(f"already present and verified: {result.path} ({size}, sha256 {result.sha256})")
    else:
        was = " (replacing a file with the wrong sha256)" if result.replaced else ""
        print(f"saved {result.path}{was} ({size}, sha256 {result.sha256} verified)")
    if not _found_by_lookup(result.path):
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
    except (KeyboardInterrupt, _Stopped) as exc:
        if args.debug:
            raise
        print("error: interrupted (no partial file is left)", file=sys.stderr)
        return 128 + (exc.signum if isinstance(exc, _Stopped) else signal.SIGINT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
