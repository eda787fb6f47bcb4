"""A study's warm start: one reconstruction-pretrained model that every trial fine-tunes from.

The reference TTSR recipe trains with the reconstruction loss before adding the perceptual,
transferal and adversarial losses. For a study with ``pretrain:`` in experiments.yaml, the
driver trains the fixed config with the ``pretrain`` values over it once, as a Ray task with the
resources of the trials it holds back and its own MLflow child run, keeps its best model at
``<storage>/<study>/pretrain-<digest>/model.pt`` and gives that to every trial as
``init_checkpoint``. The digest hashes the warm start's config (data path included): a later
invocation or ``--resume`` with the same config reuses the model. Why: trials from one model
differ only by what the study varies (and their seed), so a small difference between loss
weights is not drowned by initialisation noise, and a short fine-tune starts above bicubic.
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
        if k not in study.search and k not in _NOT_HASHED and study.config.get(k) != v
    )
    ref = task.remote(dict(study.pretrain), dict(meta), target, int(max(1, cpus)), own)
    _wait_showing_epochs(ref, meta, name=_name(target), epochs=int(study.pretrain["epochs"]))
    return ray.get(ref)


def _name(target: str) -> str:
    return target.rstrip("/").rsplit("/", 1)[-1]


def _wait_showing_epochs(ref: Any, meta: dict[str, str], *, name: str, epochs: int) -> None:
    """Wait for the task, showing the warm start's epochs as they reach its MLflow run: a bar
    on a terminal, else a line per epoch (a log file should not fill with carriage returns)."""
    import sys

    import ray
    from mlflow import MlflowClient
    from tqdm import tqdm

    from tune.execution.parent_run import find_child

    terminal = sys.stdout.isatty()
    bar = tqdm(
        total=epochs, desc="warm start", unit="epoch", dynamic_ncols=True, disable=not terminal
    )
    shown, run_id, finished = -1, None, False
    try:
        while not finished:
            finished = bool(ray.wait([ref], timeout=2.0)[0])
            uri = meta["tracking_uri"]
            try:
                run_id = run_id or find_child(
                    uri, meta["experiment_id"], meta["parent_run_id"], name
                )
                history = MlflowClient(uri).get_metric_history(run_id, "val_psnr") if run_id else []
            except Exception:  # noqa: BLE001 - progress is best effort (e.g. the server is down)
                continue
            for m in sorted(history, key=lambda m: m.step):
                if m.step <= shown:
                    continue
                shown = m.step
                if not terminal:
                    print(f"warm start epoch {m.step}/{epochs}: val_psnr {m.value:.2f}", flush=True)
                else:
                    bar.n = m.step
                    bar.set_postfix(val_psnr=f"{m.value:.2f}")
    finally:
        bar.close()


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
    storage.write_bytes(model, (result.best_checkpoint / "model.pt").read_bytes())
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
