"""The study's console progress: one line per trial start, epoch and end.

Replaces Tune's periodic status table (CLIReporter), which reprints every trial every 30 s and
says nothing about how far the study is; the report prints the full table once, at the end.
The end-of-trial line adds trials done / total, the best value of the study's first objective
so far, and an ETA: with ``d`` the mean duration of the trials finished in this invocation, the
running trials end ``d`` after they started and the pending ones follow in waves of
``max_concurrent``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ray.tune import Callback
from ray.tune.search.repeater import TRIAL_INDEX

from ttsr import names
from tune.reporting.formatting import duration, fmt, number, short

FINAL_STATES = ("TERMINATED", "ERROR")


class ProgressLines(Callback):
    """A Tune callback that prints one line per event (picklable: Tune saves it with the run)."""

    def __init__(
        self,
        *,
        metric: str,
        mode: str,
        total: int,
        max_epochs: int | None = None,
        max_concurrent: int = 1,
        metrics: tuple[str, ...] = (),
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.metric, self.mode = metric, mode
        self.total = total
        self.max_epochs = max_epochs
        self.max_concurrent = max(1, max_concurrent)
        self.metrics = metrics or (metric,)  # shown on epoch lines
        self.echo = echo or partial(print, flush=True)
        self._reset()

    def _reset(self) -> None:
        self.started = time.monotonic()
        self.done: set[str] = set()  # trials that ended, this invocation or an earlier one
        self.running: dict[str, float] = {}  # trial id -> when it started (monotonic)
        self.durations: list[float] = []  # of the trials that ended in this invocation
        self.seen_earlier = False
        self.best: tuple[float, str] | None = None  # (value, trial id)

    # --- Tune hooks ---------------------------------------------------------------------------
    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info) -> None:
        self._reset()
        if total_num_samples and total_num_samples > 0:
            self.total = total_num_samples

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if not self.seen_earlier:  # a resumed study: trials that ended before count as done
            self.seen_earlier = True
            self.done.update(t.trial_id for t in trials if t.status in FINAL_STATES)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self.running[trial.trial_id] = time.monotonic()
        params = _label(trial.evaluated_params)
        self.echo(f"trial {trial.trial_id} started" + (f": {params}" if params else ""))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
        value = number(result.get(self.metric))
        sign = 1 if self.mode == "max" else -1
        if value is not None and (self.best is None or sign * (value - self.best[0]) > 0):
            self.best = (value, trial.trial_id)
        epoch = result.get(names.EPOCH)
        if epoch is None:
            return
        of = f"/{self.max_epochs}" if self.max_epochs else ""
        shown = ", ".join(
            f"{m} {fmt(result.get(m), '.4g')}"
            for m in self.metrics
            if number(result.get(m)) is not None
        )
        secs = number(result.get(names.EPOCH_SECONDS))
        took = f" ({duration(secs, coarse=True)})" if secs is not None else ""
        self.echo(f"trial {trial.trial_id} epoch {epoch}{of}: {shown or 'no metrics'}{took}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
        result = trial.last_result or {}
        why = result.get(names.STOP_REASON) or "stopped by the scheduler"
        value = number(result.get(self.metric))
        last = f": {self.metric} {fmt(value, '.4g')}" if value is not None else ""
        self._ended(trial, f"ended ({why}){last}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self.echo(f"trial {trial.trial_id} failed; Tune restarts it from its last checkpoint")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info) -> None:
        where = f"; see {trial.path}/error.txt" if getattr(trial, "path", None) else ""
        self._ended(trial, f"failed{where}")

    # --- lines --------------------------------------------------------------------------------
    def _ended(self, trial: Any, what: str) -> None:
        self.done.add(trial.trial_id)
        started = self.running.pop(trial.trial_id, None)
        if started is not None:
            self.durations.append(time.monotonic() - started)
        count = f"[{len(self.done)}/{self.total} done]"
        self.echo(f"{count} trial {trial.trial_id} {what} | {self.status()}")

    def status(self) -> str:
        """Best so far, elapsed time and the ETA (what the end-of-trial lines end with)."""
        best = (
            f"best {self.metric} {fmt(self.best[0], '.4g')} ({self.best[1]})"
            if self.best
            else f"no {self.metric} yet"
        )
        now = time.monotonic()
        left = max(0, self.total - len(self.done))
        if left == 0:
            eta = "all trials done"
        elif self.durations:
            eta = f"ETA {duration(self.eta(now, left), coarse=True)}"
        else:
            eta = "ETA unknown"
        return f"{best} | {duration(now - self.started, coarse=True)} elapsed, {eta}"

    def eta(self, now: float, left: int) -> float:
        """Seconds until the last of ``left`` unfinished trials ends (see the module doc)."""
        d = sum(self.durations) / len(self.durations)
        running = [max(0.0, d - (now - t0)) for t0 in self.running.values()]
        pending = max(0, left - len(running))
        return max(running, default=0.0) + math.ceil(pending / self.max_concurrent) * d


def _label(params: dict[str, Any]) -> str:
    """``per_w=0.01, repeat=2`` (a repeated suggestion's index in its group, 1-based)."""
    return ", ".join(
        f"repeat={int(v) + 1}" if k == TRIAL_INDEX else f"{k.removeprefix('case/')}={short(v)}"
        for k, v in params.items()
    )
