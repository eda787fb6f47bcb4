"""The function trainable: one Tune trial = one ``ttsr.train.train`` call.

Bridges Tune and the library: merges the study's fixed config with the trial's sampled values,
picks the device from the resources Ray assigned, reattaches to the trial's MLflow child run,
resumes from ``tune.get_checkpoint()``, and reports every epoch with its checkpoint.

Test hook: ``TTSR_TEST_FAIL_ONCE=<marker file>`` makes the first trial that finishes epoch 1
raise once (it creates the marker; with the marker present nothing happens), so tests can check
that a crashed trial restarts from its checkpoint. Not for normal use.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune

from ttsr import names
from ttsr.config import TrainConfig
from tune import parent_run

FAIL_ONCE_ENV = "TTSR_TEST_FAIL_ONCE"
CASE_KEY = "case"  # grid studies: the coupled settings of one grid point (a dict)


class InjectedFailure(RuntimeError):
    """Raised by the TTSR_TEST_FAIL_ONCE test hook."""


def trial_values(base: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The full TrainConfig values of a trial: fixed config, then grid case, then sampled keys."""
    sampled = {k: v for k, v in config.items() if k != CASE_KEY}
    return {**base, **config.get(CASE_KEY, {}), **sampled}


def pick_device(requested: str, gpu_ids: list, *, cuda_available: bool) -> tuple[str, str | None]:
    """cuda when Ray assigned this trial a GPU and CUDA works here, else cpu; returns (device,
    fallback note). A node can declare GPUs (``ray start --num-gpus``) that CUDA can't see."""
    if gpu_ids and cuda_available:
        return "cuda", None
    if gpu_ids:
        ids = ",".join(map(str, gpu_ids))
        return "cpu", f"Ray assigned GPU {ids} but CUDA is not available here; ran on cpu"
    if requested == "cuda":
        return "cpu", "config asked for cuda but Ray assigned this trial no GPU; ran on cpu"
    return "cpu", None


def train_trial(config: dict[str, Any], *, base: dict[str, Any], meta: dict[str, Any]) -> None:
    """Tune entry point. ``base``: the study's fixed TrainConfig values; ``meta``: study, MLflow
    URI, experiment and parent run id (fixed per invocation, passed with tune.with_parameters)."""
    from ttsr.tracking import MlflowTracker
    from ttsr.train import train  # heavy (torch); imported in the worker only

    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    values = trial_values(base, config)
    import torch

    device, fallback = pick_device(
        values.get("device", "auto"), ray.get_gpu_ids(), cuda_available=torch.cuda.is_available()
    )
    values["device"] = device
    # The loop's own checkpoints go to node-local scratch, not the trial dir: Tune already keeps
    # the reported ones in storage, and syncing the scratch copies too would double the bytes.
    scratch = Path(tempfile.gettempdir()) / "ttsr-trials" / f"{meta['study']}-{trial_id}"
    values["out_dir"] = str(scratch)
    values["extra"] = {**values.get("extra", {}), "study": meta["study"], "trial_id": trial_id}
    train_config = TrainConfig.from_dict(values)

    tags = {parent_run.TRIAL_ID_TAG: trial_id, "study": meta["study"], "device": device}
    if fallback:
        tags["device_fallback"] = fallback
        print(f"[{trial_id}] {fallback}")
    run_id = None
    if meta.get("parent_run_id"):
        # A restarted trial (after a crash or a driver restart) reattaches to its own child run.
        run_id = parent_run.find_child(
            meta["tracking_uri"], meta["experiment_id"], meta["parent_run_id"], trial_id
        )
    tracker = MlflowTracker(
        tracking_uri=meta["tracking_uri"],
        experiment=meta["study"],
        run_name=ctx.get_trial_name(),
        parent_run_id=meta.get("parent_run_id"),
        run_id=run_id,
        tags=tags,
    )
    fail_marker = os.environ.get(FAIL_ONCE_ENV)

    def on_epoch_end(metrics: dict[str, Any], checkpoint_dir: Path) -> None:
        report = dict(metrics)
        report[parent_run.MLFLOW_RUN_KEY] = tracker.run_id
        try:
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))
        except SystemExit:
            # Tune ends a trial it stops (ASHA, max_t, or the study interrupted) with SystemExit
            # from report(). Not a failure: KILLED here; the driver sets FINISHED for trials Tune
            # counts as TERMINATED. No stop_reason yet = the scheduler (or an interrupt) stopped it.
            if names.STOP_REASON not in metrics:
                tracker.set_tags({names.STOP_REASON: "scheduler", "stopped_by": "tune"})
            tracker.end("KILLED")
            raise
        if fail_marker and metrics.get(names.EPOCH) == 1 and _claim(fail_marker, trial_id):
            raise InjectedFailure(f"{FAIL_ONCE_ENV}: injected failure after epoch 1 of {trial_id}")

    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            once = log_each_epoch_once(tracker, history=[])
            train(train_config, on_epoch_end=on_epoch_end, tracker=once, progress=False)
            return
        with checkpoint.as_directory() as ckpt_dir:
            print(f"[{trial_id}] resuming from {checkpoint.path}")
            from ttsr.train import load_state

            once = log_each_epoch_once(tracker, history=load_state(ckpt_dir)["history"])
            train(
                train_config,
                on_epoch_end=on_epoch_end,
                resume_from=Path(ckpt_dir),
                tracker=once,
                progress=False,
            )
    finally:
        # report() has copied every checkpoint into Tune's storage before returning.
        shutil.rmtree(scratch, ignore_errors=True)


class _EpochsOnce:
    """A tracker that logs each epoch's metrics at most once in its run: an epoch the run
    already has is skipped. Everything else goes to the wrapped tracker."""

    def __init__(self, tracker: Any, logged: set[int]) -> None:
        self._tracker, self._logged = tracker, set(logged)

    def log_metrics(self, metrics: dict[str, Any], *, step: int) -> None:
        if step not in self._logged:
            self._tracker.log_metrics(metrics, step=step)
            self._logged.add(step)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracker, name)

    def __enter__(self) -> _EpochsOnce:
        self._tracker.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._tracker.__exit__(*exc)


def log_each_epoch_once(tracker: Any, history: list[dict[str, Any]]) -> _EpochsOnce:
    """Make a restarted trial's MLflow child run hold every epoch exactly once.

    The loop logs an epoch to MLflow before ``tune.report``; a worker whose node dies between
    the two (or after the log and before Tune registered the checkpoint) leaves an epoch in
    MLflow that the restarted trial runs and logs again. And an epoch Tune has, but whose MLflow
    log was lost with the node, would be missing. So: log the epochs of the resumed checkpoint's
    ``history`` that the run lacks, and skip logging the epochs the run already has.
    """
    logged: set[int] = set()
    if tracker.resumed:  # a run we reattached to may hold epochs already
        found = tracker.client.get_metric_history(tracker.run_id, names.EPOCH)
        logged = {m.step for m in found}
    once = _EpochsOnce(tracker, logged)
    for metrics in history:
        once.log_metrics(metrics, step=int(metrics[names.EPOCH]))
    return once


def _claim(marker: str, trial_id: str) -> bool:
    """Create the marker file atomically; True for the one trial that created it."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(trial_id)
    return True
