"""Tune's per-trial record (result.json, progress.csv) with every reported epoch exactly once,
also when a trial's node dies and the trial restarts from its checkpoint.

The driver writes the record: Tune's logger callbacks append each result to the trial's files in
the driver's staging directory, and the driver syncs that directory to the storage path every
``TUNE_GLOBAL_CHECKPOINT_S`` seconds. Two things go wrong when a trial restarts (Ray 2.60):

- Lost rows: at every (re)start of a trial that has a checkpoint, ``JsonLoggerCallback`` copies
  result.json from the storage path over the driver's own copy (meant for ``Tuner.restore``,
  where the driver has none). The storage copy lags by up to one sync period, so the rows
  reported since the last sync are gone: a trial whose worker died right after Tune took epoch
  2 (with its checkpoint) restarts from epoch 2's checkpoint and its record reads 1, 3, 4.
- Repeated rows: a row whose checkpoint Tune had not registered when the worker died (or, after
  a driver restart, a row newer than the experiment state) is reported again by the restarted
  trial, so it would appear twice.

These callbacks keep the driver's copy when it has one, and cut the record back to the row of
the checkpoint the trial resumes from (rows after it are reported again), on every restart.
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
    for i in range(len(rows) - 1, -1, -1):
        if checkpoint_names[i] == checkpoint:
            return i + 1
    return len(rows)


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


def _checkpoint_name(trial: Any) -> str | None:
    return Path(trial.checkpoint.path).name if trial.checkpoint is not None else None


class _Record:
    """What the JSON and CSV loggers share: called by Tune right before a (re)started trial's
    file is opened for appending."""

    _trim = staticmethod(trim_json)

    def _restore_from_remote(self, file_name: str, trial: Any) -> None:
        local = Path(trial.local_path, file_name)
        if not local.exists():  # first start in this driver (e.g. Tuner.restore): fetch it
            super()._restore_from_remote(file_name, trial)
        if local.exists():
            self._trim(local, _checkpoint_name(trial))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Tune restarts the trial later; close its file so the restart reopens it through
        # _restore_from_remote (the CSV logger would otherwise keep appending to it).
        self.log_trial_end(trial, failed=True)


class JsonRecord(_Record, JsonLoggerCallback):
    """result.json, each epoch once (see the module docstring)."""


class CsvRecord(_Record, CSVLoggerCallback):
    """progress.csv, each epoch once (see the module docstring)."""

    _trim = staticmethod(trim_csv)


def callbacks() -> list:
    """Tune's result.json and progress.csv loggers, replaced by ours (Tune adds its defaults
    only for the kinds it finds missing)."""
    return [JsonRecord(), CsvRecord()]
