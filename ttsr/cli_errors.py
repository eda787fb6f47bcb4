"""Every command-line error is one line on stderr and an exit code; tracebacks only on request.

Each CLI (`python -m ttsr.train`, `ttsr.infer`, `ttsr.data`, `ttsr.vgg`, `python tune/run.py`)
runs its body through `run_cli`, which maps what escapes to an exit code and one line:

=====  ==========================================================================================
code   what
=====  ==========================================================================================
0      done
1      anything else: ``error: <type>: <first line> (run with --debug for the traceback)``
2      bad input (`ttsr.errors.UsageError`): a flag, config, data folder, checkpoint, weight
       file; the message names it
69     a service is unreachable (the MLflow tracking server)
74     the operating system refused a read or write: disk full (ENOSPC), not writable, I/O error;
       the message names the file
130    interrupted (Ctrl-C, or SIGTERM turned into an interrupt)
=====  ==========================================================================================

``--debug`` on the command line, or ``TTSR_DEBUG=1`` in the environment, re-raises instead, so
Python prints the whole traceback.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Callable, Sequence

from ttsr.errors import UsageError, first_line

DEBUG_ENV = "TTSR_DEBUG"
DEBUG_FLAG = "--debug"
DEBUG_HELP = f"show the traceback of an error (also: {DEBUG_ENV}=1)"

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # sysexits.h EX_UNAVAILABLE
EXIT_IO = 74  # sysexits.h EX_IOERR
EXIT_INTERRUPTED = 130


_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space or choose another location, then run again",
    errno.EDQUOT: "the disk quota is used up: free space or choose another location",
    errno.EROFS: "a read-only filesystem: choose a writable location",
    errno.EACCES: "permission denied: choose a location you may write",
}


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    """``--debug`` among the arguments (``sys.argv`` when None) or ``TTSR_DEBUG=1``."""
    args = sys.argv[1:] if argv is None else argv
    return DEBUG_FLAG in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def describe_os_error(exc: OSError) -> str:
    """``<file>: <why>; <what to do>`` for an OSError."""
    why = exc.strerror or first_line(exc)
    plain = exc.errno is not None and why == os.strerror(exc.errno)  # else it says what to do
    hint = _OS_HINTS.get(exc.errno) if plain else None
    text = f"{exc.filename}: {why}" if exc.filename is not None else why
    return f"{text} ({hint})" if hint else text


def describe(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message without the ``error: `` prefix) for ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        detail = first_line(exc) if str(exc).strip() else ""
        return EXIT_INTERRUPTED, "interrupted" + (f" ({detail})" if detail else "")
    if isinstance(exc, UsageError):
        return EXIT_USAGE, first_line(exc)
    tracking = sys.modules.get("ttsr.tracking")  # loaded by any command that tracks
    if tracking is not None and tracking.is_unavailable(exc):
        if isinstance(exc, ConnectionError):  # ours (ttsr.tracking.TrackingUnavailable): says it
            return EXIT_UNAVAILABLE, f"MLflow tracking server {first_line(exc)}"
        return EXIT_UNAVAILABLE, f"MLflow tracking server unreachable ({short_reason(exc)})"
    if isinstance(exc, OSError) and exc.errno is not None:
        return EXIT_IO, describe_os_error(exc)
    return EXIT_FAILURE, (
        f"{type(exc).__name__}: {first_line(exc)} (run with {DEBUG_FLAG} for the traceback)"
    )


def short_reason(exc: BaseException) -> str:
    """An HTTP client error in a few words: the URL and the innermost ``[Errno N] why``."""
    text = str(exc)
    url = re.search(r"https?://[^\s'\"]+", text)
    why = re.findall(r"\[Errno -?\d+\] [^'\")]+", text)
    parts = [url.group(0) if url else None, why[-1] if why else None]
    found = ": ".join(p for p in parts if p)
    return found or first_line(exc)


def run_cli(body: Callable[[], int | None], *, argv: Sequence[str] | None = None) -> int:
    """Run a CLI's body; what escapes becomes one ``error:`` line and an exit code (see the
    module docstring). SystemExit (argparse's usage errors, ``--help``) passes through."""
    debug = debug_requested(argv)
    try:
        return body() or 0
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - the point: nothing escapes as a traceback
        if debug:
            raise
        code, message = describe(exc)
        print(f"error: {message}", file=sys.stderr, flush=True)
        return code
