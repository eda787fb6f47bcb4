"""The function trainable: one Tune trial = one ``ttsr.train.train`` call.

Bridges Tune and the library: merges the study's fixed config with the trial's sampled values,
picks the device from the resources Ray assigned, reattaches to the trial's MLflow child run,
resumes from ``ray_tune.get_checkpoint()``, and reports every epoch with its checkpoint.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import ray
from ray import tune as ray_tune
from ray.tune.search.repeater import TRIAL_INDEX

from ttsr import names
from ttsr.config import TrainConfig
from ttsr.tracking import MlflowCallback, MlflowTracker
from ttsr.train.callbacks import Callback
from tune.execution import parent_run
from tune.execution.parent_run import MLFLOW_RUN_KEY
from tune.execution.storage import fetch_file
from tune.reporting import groups

CASE_KEY = "case"  # grid studies: the coupled settings of one grid point (a dict)


def trial_values(base: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The full TrainConfig values of a trial: fixed config, then grid case, then sampled keys;
    a repeated suggestion's trial i runs with the fixed seed + i."""
    sampled = {k: v for k, v in config.items() if k not in (CASE_KEY, TRIAL_INDEX)}
    values = {**base, **config.get(CASE_KEY, {}), **sampled}
    if TRIAL_INDEX in config:
        values["seed"] = int(base.get("seed", 0)) + int(config[TRIAL_INDEX])
    return values


def trial_naming(values: dict[str, Any], meta: dict[str, Any]) -> tuple[list[str], str, str]:
    """(the config keys logged as MLflow params, the ``config`` tag, the run name) of a trial.

    Params are what differs between the study's trials (its varied keys, and the seed when
    configurations repeat over seeds); the whole config is the run's ``config.json`` artifact.
    The ``config`` tag is the configuration's label in the report (equal across seeds), the run
    name that label and the seed (``per_w=30, tpl_w=3, adv_w=0.05 · seed 1``)."""
    varied = {k: values[k] for k in meta.get("varied", ()) if k in values}
    params = dict(varied)
    if int(meta.get("repeats", 1)) > 1:
        params[groups.SEED_KEY] = values.get(groups.SEED_KEY, 0)
    if varied:
        run_name = groups.trial_label(params)
    else:  # a study that varies nothing is named after itself (and the seed, when seeds vary)
        seed = params.get(groups.SEED_KEY)
        run_name = meta["study"] + (f" · seed {seed}" if seed is not None else "")
    return list(params), groups.label(varied), run_name


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
    URI, experiment and parent run id (fixed per invocation, passed with with_parameters)."""
    from ttsr.train import train  # heavy (torch); imported in the worker only

    trial_id = ray_tune.get_context().get_trial_id()
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
    if values.get("init_checkpoint"):  # the study's warm start, maybe in remote storage
        local = scratch / "init_checkpoint.pt"
        values["init_checkpoint"] = str(fetch_file(values["init_checkpoint"], local))
    train_config = TrainConfig.from_dict(values)

    shown, config_name, run_name = trial_naming(values, meta)
    tags = {
        parent_run.TRIAL_ID_TAG: trial_id,
        "study": meta["study"],
        "device": device,
        parent_run.CONFIG_TAG: config_name,
        parent_run.ROLE_TAG: parent_run.ROLE_TRIAL,
    }
    if fallback:
        tags["device_fallback"] = fallback
        print(f"[{trial_id}] {fallback}")
    parent = meta.get("parent_run_id")
    tracker = MlflowTracker(
        tracking_uri=meta["tracking_uri"],
        experiment=meta["study"],
        run_name=run_name,
        parent_run_id=parent,
        # A restarted trial (after a crash or a driver restart) reattaches to its own child run.
        run_id=parent_run.find_child(meta["tracking_uri"], meta["experiment_id"], parent, trial_id)
        if parent
        else None,
        tags=tags,
    )
    callbacks = [MlflowCallback(tracker, params=shown), TuneReport(tracker, trial_id)]
    checkpoint = ray_tune.get_checkpoint()
    try:
        with tracker, checkpoint.as_directory() if checkpoint else nullcontext() as ckpt_dir:
            if ckpt_dir is not None:
                print(f"[{trial_id}] resuming from {checkpoint.path}")
            resume_from = Path(ckpt_dir) if ckpt_dir is not None else None
            train(train_config, callbacks=callbacks, resume_from=resume_from, progress=False)
    finally:
        # report() has copied every checkpoint into Tune's storage before returning.
        shutil.rmtree(scratch, ignore_errors=True)


class TuneReport(Callback):
    """Reports every epoch (with its checkpoint) to Tune."""

    def __init__(self, tracker: MlflowTracker, trial_id: str):
        self.tracker, self.trial_id = tracker, trial_id

    def on_epoch_end(
        self, metrics: dict[str, Any], checkpoint_dir: Path, images: dict[str, Path]
    ) -> None:
        report = {**metrics, MLFLOW_RUN_KEY: self.tracker.run_id}
        try:
            ray_tune.report(
                report, checkpoint=ray_tune.Checkpoint.from_directory(str(checkpoint_dir))
            )
        except SystemExit:
            # Tune ends a trial it stops (ASHA, max_t, or the study interrupted) with SystemExit
            # from report(). Not a failure: KILLED here; the driver sets FINISHED for trials Tune
            # counts as TERMINATED. No stop_reason yet = the scheduler (or an interrupt) stopped it.
            if names.STOP_REASON not in metrics:
                self.tracker.set_tags({names.STOP_REASON: "scheduler", "stopped_by": "tune"})
            self.tracker.end("KILLED")
            raise
