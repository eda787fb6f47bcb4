"""Tune's per-trial record (result.json, progress.csv) with every reported epoch exactly once,
also when a trial's node dies and the trial restarts from its checkpoint.

Tune's logger callbacks append each result to the trial's files in the driver's staging dir,
synced to the storage path every ``TUNE_GLOBAL_CHECKPOINT_S``. On a restart (Ray 2.60):

- rows are lost: ``JsonLoggerCallback`` copies result.json from the storage path over the
  driver's own copy (meant for ``Tuner.restore``); that copy lags by up to one sync period;
- rows repeat: a row whose checkpoint Tune had not registered (or, after a driver restart, one
  newer than the experiment state) is reported again by the restarted trial.

These callbacks keep the driver's copy when it has one and, on every restart, cut the record
back to the row of the checkpoint the trial resumes from.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ray.train.constants import CHECKPOINT_DIR_NAME
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback


def keep_through(rows: list[Any], checkpoint_names: list[Any], checkpoint: str | None) -> int:
    """How many leading rows to keep when a trial resumes from ``checkpoint`` (a checkpoint dir
    name; None: it starts over, so none). A record without that checkpoint is kept whole."""
    if checkpoint is None:
        return 0
    if checkpoint not in checkpoint_names:
        return len(rows)
    return len(checkpoint_names) - checkpoint_names[::-1].index(checkpoint)


def trim_json(path: Path, checkpoint: str | None) -> int:
    """Cut result.json back to ``checkpoint``'s row; returns the rows removed."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    names = [json.loads(line).get(CHECKPOINT_DIR_NAME) for line in lines]
    keep = keep_through(lines, names, checkpoint)
    if keep < len(lines):
        path.write_text("".join(f"{line}\n" for line in lines[:keep]))
    return len(lines) - keep


def trim_csv(path: Path, checkpoint: str | None) -> int:
    """Cut progress.csv back to ``checkpoint``'s row (the header stays); returns rows removed."""
    table = list(csv.reader(io.StringIO(path.read_text())))
    if not table or CHECKPOINT_DIR_NAME not in table[0]:
        return 0
    header, rows = table[0], table[1:]
    column = header.index(CHECKPOINT_DIR_NAME)
    names = [row[column] if len(row) > column else None for row in rows]
    keep = keep_through(rows, names, checkpoint)
    if keep < len(rows):
        out = io.StringIO()
        csv.writer(out).writerows([header, *rows[:keep]])
        path.write_text(out.getvalue())
    return len(rows) - keep


class _Record:
    """What the JSON and CSV loggers share: called by Tune right before a (re)started trial's
    file is opened for appending."""

    _trim = staticmethod(trim_json)

    def _restore_from_remote(self, file_name: str, trial: Any) -> None:
        local = Path(trial.local_path, file_name)
        if not local.exists():  # first start in this driver (e.g. Tuner.restore): fetch it
            super()._restore_from_remote(file_name, trial)
        if local.exists():
            checkpoint = trial.checkpoint
            self._trim(local, Path(checkpoint.path).name if checkpoint is not None else None)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Tune restarts the trial later; close its file so the restart reopens it through
        # _restore_from_remote (the CSV logger would otherwise keep appending to it).
        self.log_trial_end(trial, failed=True)


class JsonRecord(_Record, JsonLoggerCallback):
    """result.json, each epoch once (see the module docstring)."""


class CsvRecord(_Record, CSVLoggerCallback):
    """progress.csv, each epoch once (see the module docstring)."""

    _trim = staticmethod(trim_csv)
