"""Two conventions every part of ttsr-tune shares: `UsageError`, bad input a user can fix (the
command-line tools exit 2 on it: ttsr.cli_errors), and `first_line`, an exception in one line.
`DataError` is the data package's (paths, sizes, modes, splits, files); the other kinds live
beside the code that raises them."""

from __future__ import annotations

MAX_LINE = 400


class UsageError(Exception):
    """Bad input a user can fix: a flag, config, study, data folder, checkpoint, model URI or
    weights file. The message is one line and names the culprit."""


_WORKER_PREFIX = "Caught DataError"  # how torch's DataLoader re-raises a worker's exception


class DataError(UsageError, ValueError):
    """A data source or option is unusable; the one-line message names the culprit.

    A DataLoader worker's DataError reaches the main process as
    ``DataError("Caught DataError in DataLoader worker process N.\\nOriginal Traceback ...")``
    with the worker's whole traceback; only the original one-line message is kept, so that the
    CLIs still print one line.
    """

    def __init__(self, message: str) -> None:
        lines = str(message).strip().splitlines()
        if len(lines) > 1 and lines[0].startswith(_WORKER_PREFIX):
            message = lines[-1].split("DataError: ", 1)[-1]
        super().__init__(message)


def first_line(exc: BaseException, limit: int = MAX_LINE) -> str:
    """The first non-empty line of ``str(exc)`` (the type's name when empty), cut to ``limit``.
    A message that is itself a formatted traceback (Ray's TuneError) gives its last line: the
    error it ends with, not "Traceback (most recent call last):"."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if text.startswith("Traceback (most recent call last)"):
        text = lines[-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."
