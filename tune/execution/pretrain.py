"""A study's warm start: one reconstruction-pretrained model that every trial fine-tunes from.

The reference TTSR recipe trains with the reconstruction loss before adding the perceptual,
transferal and adversarial losses. A study with ``pretrain:`` in experiments.yaml does that once:
before its trials, the driver trains the fixed config with the ``pretrain`` values over it (as a
Ray task with the resources of the trials it holds back, logged as its own MLflow child run, tag
``role=pretrain``), keeps its best model in storage under
``<storage>/<study>/pretrain-<digest>/model.pt``, and hands that path to every trial as
``init_checkpoint``. The digest is a hash of the warm start's config (data path included): a
later invocation, or ``--resume``, with the same config reuses it instead of training again.

Why: trials that start from the same model differ only by what the study varies (and their
seed), so a small difference between loss weights is not drowned by initialisation noise, and a
short fine-tune on a laptop starts above bicubic instead of at random.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tune.execution import storage
from tune.execution.storage import MLFLOW_RUN_KEY
from tune.study.studies import Study

PRETRAIN_FILE = "pretrain.json"
WARM_START_CONFIG = "warm start"  # its `config` tag: never one of the trials' configurations
_NOT_HASHED = ("out_dir", "extra")  # where it is written does not change what is trained


def digest(values: dict[str, Any]) -> str:
    kept = {k: v for k, v in sorted(values.items()) if k not in _NOT_HASHED}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def target_dir(study: Study, study_root: str) -> str:
    return f"{study_root}/pretrain-{digest(study.pretrain or {})}"


def warm_start(study: Study, *, study_root: str, meta: dict[str, str], cpus: float) -> Study:
    """``study`` with ``init_checkpoint`` set to its warm start (trained now, or reused);
    ``study`` itself when it has no ``pretrain``."""
    if study.pretrain is None:
        return study
    target = target_dir(study, study_root)
    info = storage.read_json(f"{target}/{PRETRAIN_FILE}")
    if info is not None:
        print(f"warm start: reusing {info['model']} ({describe(info)})", flush=True)
    else:
        print(
            f"warm start: training the reconstruction-only model every trial starts from "
            f"({study.pretrain.get('epochs')} epoch(s), once; cached in {target})",
            flush=True,
        )
        info = _train_remotely(study, target=target, meta=meta, cpus=cpus)
        storage.write_json(f"{target}/{PRETRAIN_FILE}", info)
        print(f"warm start: {describe(info)}", flush=True)
    return replace(study, config={**study.config, "init_checkpoint": info["model"]})


def describe(info: dict[str, Any]) -> str:
    return (
        f"best val_psnr {info['best_val_psnr']:.2f} dB at epoch {info['best_epoch']}, "
        f"bicubic {info['bicubic_psnr']:.2f} dB, {info['seconds']:.0f} s"
    )


def _train_remotely(study: Study, *, target: str, meta: dict[str, str], cpus: float) -> dict:
    """Run `_pretrain_task` on the cluster; show its epochs as they reach MLflow."""
    import ray

    task = ray.remote(_pretrain_task).options(
        num_cpus=cpus, num_gpus=min(study.gpus_per_trial, 1.0), max_retries=2
    )
    # Its params: what it sets differently from the trials' fixed config (not the searched
    # keys: their zeros would read like a reconstruction-only trial in the UI's comparison).
    own = sorted(
        k
        for k, v in study.pretrain.items()
        if k not in study.search and k not in ("out_dir", "extra") and study.config.get(k) != v
    )
    ref = task.remote(dict(study.pretrain), dict(meta), target, int(max(1, cpus)), own)
    with _EpochProgress(meta, name=_name(target), epochs=int(study.pretrain["epochs"])) as bar:
        while not ray.wait([ref], timeout=2.0)[0]:
            bar.poll()
    return ray.get(ref)


def _name(target: str) -> str:
    return target.rstrip("/").rsplit("/", 1)[-1]


class _EpochProgress:
    """The warm start's epochs, read from its MLflow run: a bar on a terminal, else a line per
    epoch (a log file should not fill with carriage returns)."""

    def __init__(self, meta: dict[str, str], *, name: str, epochs: int) -> None:
        import sys

        from tqdm import tqdm

        self.meta, self.name, self.epochs = meta, name, epochs
        self.shown, self.run_id = -1, None
        self.bar = None
        if sys.stdout.isatty():
            self.bar = tqdm(total=epochs, desc="warm start", unit="epoch", dynamic_ncols=True)

    def __enter__(self) -> _EpochProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.poll()
        if self.bar is not None:
            self.bar.close()

    def poll(self) -> None:
        from mlflow import MlflowClient

        from tune.execution.parent_run import find_child

        try:
            uri = self.meta["tracking_uri"]
            if self.run_id is None:
                self.run_id = find_child(
                    uri, self.meta["experiment_id"], self.meta["parent_run_id"], self.name
                )
            if self.run_id is None:
                return
            history = MlflowClient(uri).get_metric_history(self.run_id, "val_psnr")
        except Exception:  # noqa: BLE001 - progress is best effort (e.g. the server is down)
            return
        for m in sorted(history, key=lambda m: m.step):
            if m.step <= self.shown:
                continue
            self.shown = m.step
            if self.bar is not None:
                self.bar.n = m.step
                self.bar.set_postfix(val_psnr=f"{m.value:.2f}")
            else:
                print(
                    f"warm start epoch {m.step}/{self.epochs}: val_psnr {m.value:.2f}", flush=True
                )


def _pretrain_task(
    values: dict, meta: dict, target: str, threads: int, params: list[str]
) -> dict[str, Any]:
    """Runs in a Ray worker: train, then copy the best model.pt into storage."""
    import ray
    import torch

    from ttsr.config import TrainConfig
    from ttsr.tracking import MlflowCallback, MlflowTracker
    from ttsr.train import train
    from tune.execution.parent_run import CONFIG_TAG, ROLE_TAG, ROLE_WARM_START, TRIAL_ID_TAG
    from tune.execution.trainable import pick_device

    torch.set_num_threads(threads)
    started = time.monotonic()
    name = _name(target)
    device, _ = pick_device(
        values.get("device", "auto"), ray.get_gpu_ids(), cuda_available=torch.cuda.is_available()
    )
    scratch = Path(tempfile.gettempdir()) / "ttsr-pretrain" / f"{meta['study']}-{name}"
    config = TrainConfig.from_dict({**values, "device": device, "out_dir": str(scratch)})
    latest = scratch / "checkpoints" / "latest"
    tracker = MlflowTracker(
        tracking_uri=meta["tracking_uri"],
        experiment=meta["study"],
        run_name=f"warm start ({values.get('epochs')} epochs, reconstruction only)",
        parent_run_id=meta.get("parent_run_id"),
        tags={
            ROLE_TAG: ROLE_WARM_START,
            CONFIG_TAG: WARM_START_CONFIG,
            TRIAL_ID_TAG: name,
            "study": meta["study"],
            "device": device,
        },
    )
    with tracker:  # a retried task (node died) continues its own checkpoint on this node
        result = train(
            config,
            callbacks=[MlflowCallback(tracker, params=params)],
            resume_from=latest if (latest / "state.pt").is_file() else None,
            progress=False,
        )
    if result.best_checkpoint is None:
        raise RuntimeError(f"warm start {name}: no best checkpoint ({result.stop_detail})")
    model = f"{target}/model.pt"
    storage.put_file(result.best_checkpoint / "model.pt", model)
    last = result.history[-1]
    shutil.rmtree(scratch, ignore_errors=True)
    return {
        "model": model,
        "best_val_psnr": result.best_val_psnr,
        "best_epoch": result.best_epoch,
        "bicubic_psnr": last["bicubic_psnr"],
        "stop_reason": result.stop_reason,
        "epochs_run": int(last["epoch"]),
        MLFLOW_RUN_KEY: tracker.run_id,
        "seconds": time.monotonic() - started,
        "config": values,
    }
