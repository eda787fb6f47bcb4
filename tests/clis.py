"""A CLI's ``main(argv)`` called in the test's process, as a CompletedProcess: for tests where a
process per call would prove nothing more than the process-level CLI tests beside them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

# Prefix for a command the test will send Ctrl-C (SIGINT): it starts the way a terminal's shell
# starts it, with SIGINT's default action and unblocked, whatever the worker that runs it
# inherited (a child inherits an ignored or blocked SIGINT; a shell's background job, for one,
# ignores it). It then execs the command itself, so the process keeps its pid.
AS_FROM_A_TERMINAL = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]


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
