"""Stop a study cleanly when its storage is full, instead of retrying trials that cannot save.

A trial whose checkpoint cannot be copied into ``--storage`` fails in ``ray_tune.report``; Tune
would restart it (``FailureConfig``) and start the next trials, all failing the same way. At the
first failure saying "No space left on device", `StopWhenFull` interrupts the study as Ctrl-C
does (Tune's SIGUSR1 handler: trials keep their state and ``--resume`` continues them; a stopper
would mark them TERMINATED), and ``tune/run.py`` ends with one line (exit 74). Tune registers a
checkpoint only once copied whole, so a resumed trial starts from a complete one; the failed
save's half-copied directory is removed at once, so that Tune's experiment state, written into
the same storage as the study stops, fits (a state cut short is one ``--resume`` cannot read).

Tune restores its callbacks from the pickled experiment state on ``--resume``, so what was seen
is kept in this module (the driver process), not in the instance.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from ray import tune as ray_tune

from tune.execution.storage import is_remote

NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"
_seen: list[str] = []  # trial ids whose save failed for want of space, in this driver


class StopWhenFull(ray_tune.Callback):
    """Interrupt the study at the first trial that failed because the storage is full."""

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._check(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._check(trial)

    def _check(self, trial: Any) -> None:
        try:
            text = Path(trial.error_file).read_text(errors="replace")
        except (OSError, TypeError):  # no error file (it could not be written either)
            return
        last = text.rsplit("Failure # ", 1)[-1]
        if NO_SPACE in last and trial.trial_id not in _seen:
            _seen.append(trial.trial_id)
            freed = _remove_unregistered_checkpoints(trial)
            print(
                f"trial {trial.trial_id} could not save its checkpoint: the storage is full "
                f"({NO_SPACE}); stopping the study{freed}",
                flush=True,
            )
            # Tune's graceful interrupt (installed by Tuner.fit in this, the main thread)
            os.kill(os.getpid(), signal.SIGUSR1)


def _remove_unregistered_checkpoints(trial: Any) -> str:
    """Remove the trial's checkpoint directories newer than the last one Tune registered (the
    failed save's); ``""`` or ``" (removed its half-written checkpoint_N)"`` for the message."""
    if not trial.path or is_remote(trial.path):  # a remote store: none here to remove
        return ""
    registered = trial.checkpoint
    last = Path(registered.path).name if registered is not None else ""
    removed = []
    for directory in sorted(Path(trial.path).glob("checkpoint_*")):
        if directory.name > last:  # zero-padded names: newer sorts later
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory.name)
    return f" (removed its half-written {', '.join(removed)})" if removed else ""


def full_trials() -> list[str]:
    """The trials of this driver's study that hit a full storage (empty: none did)."""
    return list(_seen)


def storage_full_error(storage: str) -> OSError:
    """The one-line error the driver ends with (``ttsr.cli_errors`` prints it, exit 74)."""
    trials = ", ".join(_seen)
    why = (
        f"{NO_SPACE}: the study stopped when trial {trials} could not save a checkpoint; "
        "every checkpoint Tune registered is complete: free space, then --resume"
    )
    return OSError(errno.ENOSPC, why, storage)
