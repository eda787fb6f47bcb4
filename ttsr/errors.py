"""Two conventions every part of ttsr-tune shares: `UsageError`, bad input a user can fix (the
command-line tools exit 2 on it: ttsr.cli_errors), and `first_line`, an exception in one line."""

from __future__ import annotations

MAX_LINE = 400


class UsageError(Exception):
    """Bad input a user can fix: a flag, config, study, data folder, checkpoint, model URI or
    weights file. The message is one line and names the culprit."""


def first_line(exc: BaseException, limit: int = MAX_LINE) -> str:
    """The first non-empty line of ``str(exc)`` (the type's name when empty), cut to ``limit``.
    A message that is itself a formatted traceback (Ray's TuneError) gives its last line: the
    error it ends with, not "Traceback (most recent call last):"."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if text.startswith("Traceback (most recent call last)"):
        text = lines[-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."
