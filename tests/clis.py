"""A CLI's ``main(argv)`` called in the test's process, as a CompletedProcess: for tests where a
process per call would prove nothing more than the process-level CLI tests beside them."""

from __future__ import annotations

import subprocess
from collections.abc import Callable


def call_main(
    main: Callable[[list[str]], int], args: list[str], capfd
) -> subprocess.CompletedProcess:
    """``main(args)``'s exit code (argparse's SystemExit too) and its output, captured at the
    file descriptors with pytest's ``capfd``, so a stray log line still counts."""
    capfd.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)
