"""Setting up a training run: the trainer, the data, validation, checkpoints, resume.

`start_run(config, resume_from)` returns a `Run` with everything the loop in
`ttsr/train/loop.py` needs, so the loop itself shows only the epoch; its `TrainingState` is
what a checkpoint saves and a resume restores.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ttsr import names
from ttsr.checkpoint import (
    STATE_FILE,
    copy_checkpoint_dir,
    load_state,
    rng_state,
    set_rng_state,
    write_training_checkpoint,
)
from ttsr.config import TrainConfig
from ttsr.data import open_dataset_from_config
from ttsr.data.loading import loader_options
from ttsr.fast_paths import FAST_PATHS_TAG, FastPaths, self_test
from ttsr.grids import save_sample_grid
from ttsr.train.batches import PassItems, StepSampler, StepSchedule
from ttsr.train.callbacks import RunInfo, TrainResult
from ttsr.train.early_stopping import EarlyStopper, LossSpikeMonitor, OutputStats
from ttsr.train.evaluate import Evaluator
from ttsr.train.trainer import IMAGE_KEYS, Trainer, build_trainer


def fixed_samples(dataset: Dataset, count: int) -> dict[str, torch.Tensor]:
    """The first ``count`` items of a dataset stacked into a batch (for sample grids)."""
    items = [dataset[i] for i in range(min(count, len(dataset)))]
    return {k: torch.stack([it[k] for it in items]) for k in IMAGE_KEYS}


@dataclass
class TrainingState:
    """What `state.pt` holds (`state_dict`, listed in docs/TRAINING.md) and a resume restores:
    tensors and primitives only, so `torch.load(weights_only=True)` reads it."""

    trainer: Trainer
    stopper: EarlyStopper
    spikes: LossSpikeMonitor
    epoch: int = -1  # the last epoch done (0 = validated before training; -1 = nothing yet)
    step: int = 0  # optimiser steps done
    images: int = 0  # training images seen
    history: list[dict[str, Any]] = field(default_factory=list)
    bicubic_psnr: float | None = None
    baseline: OutputStats | None = None  # output health at epoch 0
    extra: dict[str, Any] = field(default_factory=dict)  # saved as is (e.g. an MLflow run id)

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            **self.trainer.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "images_seen": self.images,
            "history": self.history,
            "bicubic_psnr": self.bicubic_psnr,
            "baseline": dataclasses.asdict(self.baseline) if self.baseline else None,
            "stopper": self.stopper.state_dict(),
            "spikes": self.spikes.state_dict(),
            "rng": rng_state(),
            "config": self.trainer.config.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(state)
        self.stopper.load_state_dict(state["stopper"])
        self.spikes.load_state_dict(state.get("spikes", {"recent": []}))
        self.epoch = int(state["epoch"])
        self.step = int(state.get("step", 0))
        self.images = int(state.get("images_seen", 0))
        self.history = list(state["history"])
        self.bicubic_psnr = state["bicubic_psnr"]
        baseline = state.get("baseline")
        self.baseline = OutputStats(**baseline) if baseline else None
        set_rng_state(state["rng"])
        if self.stopper.stop_reason == names.STOP_MAX_EPOCHS and self.trainer.config.epochs > (
            self.epoch
        ):
            # More epochs were asked for: keep going; the old last epoch is no longer final.
            self.stopper.stop_reason = None
            for key in (names.STOP_REASON, names.STOP_DETAIL, names.STOP_SIGNAL):
                self.history[-1].pop(key, None)


@dataclass
class Run:
    config: TrainConfig
    trainer: Trainer
    train_set: Dataset
    evaluator: Evaluator
    schedule: StepSchedule
    state: TrainingState
    train_loader: DataLoader  # one per run, so that its workers persist (a StepSampler's)
    out_dir: Path
    grid_samples: dict[str, dict[str, torch.Tensor]]
    tags: dict[str, str]
    resumed: bool

    @property
    def latest_dir(self) -> Path:
        return self.out_dir / "checkpoints" / "latest"

    @property
    def best_dir(self) -> Path:
        return self.out_dir / "checkpoints" / "best"

    @property
    def stopper(self) -> EarlyStopper:
        return self.state.stopper

    def info(self) -> RunInfo:
        return RunInfo(
            config=self.config,
            tags=dict(self.tags),
            resumed=self.resumed,
            start_epoch=self.state.epoch + 1,
            out_dir=self.out_dir,
            train_items=len(self.train_set),
            val_items=self.evaluator.images,
            total_steps=self.schedule.round_end(self.schedule.rounds),
            history=tuple(dict(m) for m in self.state.history),
        )

    def batches(self, epoch: int) -> DataLoader:
        """The training batches of round ``epoch``: steps ``[round_end(e-1), round_end(e))``.

        Always the same loader (its workers persist across rounds), moved to this round's steps.
        """
        self.train_loader.batch_sampler.set_range(self.state.step, self.schedule.round_end(epoch))
        return self.train_loader

    def write_grids(self, epoch: int) -> dict[str, Path]:
        """Sample grids (LR_up | Ref | SR | HR) of fixed train and test items, every
        ``sample_every`` epochs (epoch 0 included)."""
        every = self.config.sample_every
        if not every or epoch % every:
            return {}
        paths = {}
        for split, batch in self.grid_samples.items():
            sr = self.trainer.infer(batch)
            parts = {k: self.trainer.prepare(v) for k, v in batch.items()}
            path = self.out_dir / "samples" / f"epoch_{epoch:03d}_{split}.png"
            paths[split] = save_sample_grid(path, parts["LR_up"], parts["Ref"], sr, parts["HR"])
        return paths

    def save(self, *, improved: bool) -> None:
        """Checkpoint: latest always; best when this epoch improved (never a diverged one)."""
        last = self.state.history[-1]
        write_training_checkpoint(
            self.latest_dir,
            state=self.state.state_dict(),
            model=self.trainer.model,
            extra={"epoch": self.state.epoch, "val_psnr": last.get(names.VAL_PSNR)},
        )
        if improved:
            copy_checkpoint_dir(self.latest_dir, self.best_dir)

    def result(self) -> TrainResult:
        last = self.state.history[-1] if self.state.history else {}
        return TrainResult(
            stop_reason=self.stopper.stop_reason or names.STOP_MAX_EPOCHS,
            best_epoch=self.stopper.best_epoch,
            best_val_psnr=last.get(names.BEST_VAL_PSNR, math.nan),
            history=self.state.history,
            best_checkpoint=self.best_dir if (self.best_dir / STATE_FILE).is_file() else None,
            stop_detail=self.stopper.detail,
            stop_signal=self.stopper.signal,
        )


def start_run(
    config: TrainConfig,
    *,
    resume_from: str | Path | None = None,
    checkpoint_extra: dict[str, Any] | None = None,
) -> Run:
    """Build the trainer and data of ``config``; restore ``resume_from`` when given."""
    state_dict = load_state(resume_from) if resume_from is not None else None
    if state_dict is not None and config.init_checkpoint is not None:
        # The resumed state holds the weights; the warm start already happened.
        config = config.replace(init_checkpoint=None)
    trainer = build_trainer(config)
    train_set = open_dataset_from_config(config, "train")
    # Each fast path proves itself at the run's real sizes; one that fails is switched off.
    # (A whole training batch only for `compile`, whose check is the first step's compile.)
    samples = fixed_samples(train_set, config.batch_size if config.compile else 1)
    trainer, paths = self_test(trainer, samples)
    evaluator = Evaluator(config, device=trainer.device)
    state = TrainingState(
        trainer=trainer,
        stopper=EarlyStopper(
            patience=config.patience,
            min_delta=config.min_delta,
            divergence_floor_db=config.divergence_floor_db,
            divergence_epochs=config.divergence_epochs,
            metric=config.early_stop_metric,
            keep_last=config.keep == "last",
        ),
        spikes=LossSpikeMonitor(config.spike_factor),
        extra=dict(checkpoint_extra or {}),
    )
    if state_dict is not None:
        state.load_state_dict(state_dict)
    if state.bicubic_psnr is None:
        state.bicubic_psnr = evaluator.bicubic_psnr(trainer.device)
    schedule = StepSchedule(len(train_set), config.batch_size, config.epochs, config.step_budget)
    train_loader = DataLoader(
        PassItems(train_set),
        batch_sampler=StepSampler(schedule, seed=config.seed),
        **loader_options(config.num_workers, trainer.device),
    )
    return Run(
        config=config,
        trainer=trainer,
        train_set=train_set,
        evaluator=evaluator,
        schedule=schedule,
        state=state,
        train_loader=train_loader,
        out_dir=Path(config.out_dir),
        grid_samples={
            "train": fixed_samples(train_set, config.num_samples_grid),
            "test": fixed_samples(evaluator.datasets[config.ref_mode], config.num_samples_grid),
        },
        tags=_tags(trainer, paths),
        resumed=state_dict is not None,
    )


def _tags(trainer: Trainer, paths: FastPaths) -> dict[str, str]:
    """What the run ran on; a tracker adds its own (ttsr.tracking: source, commit, diff)."""
    device = trainer.device
    tags = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "vgg_pretrained": str(trainer.vgg_pretrained).lower(),
        FAST_PATHS_TAG: paths.tag(),
        names.THREADS_TAG: str(torch.get_num_threads()),
    }
    if not trainer.vgg_pretrained:
        tags["warning"] = (
            "VGG19 ImageNet weights not found: LTE, perceptual loss and val_perceptual use "
            "random weights"
        )
    if trainer.config.init_checkpoint:
        tags["init_checkpoint"] = trainer.config.init_checkpoint
    return tags


def print_summary(metrics: dict[str, Any], epochs: int) -> None:
    """One line per epoch (also in trial logs)."""
    losses = " ".join(
        f"{k.removeprefix('loss_')} {metrics[k]:.4f}" for k in names.LOSSES if metrics.get(k)
    )
    line = (
        f"epoch {metrics[names.EPOCH]}/{epochs} | {losses or 'before training'} | "
        f"val_psnr {metrics[names.VAL_PSNR]:.2f} "
        f"(bicubic {metrics[names.BICUBIC_PSNR]:.2f}) val_ssim {metrics[names.VAL_SSIM]:.4f} | "
        f"{metrics[names.EPOCH_SECONDS]:.1f} s"
    )
    if names.STOP_REASON in metrics:
        line += f" | stop: {metrics[names.STOP_REASON]}"
        if names.BEST_VAL_PSNR in metrics:
            line += (
                f", kept epoch {metrics[names.BEST_EPOCH]} "
                f"(val_psnr {metrics[names.BEST_VAL_PSNR]:.2f} dB)"
            )
    print(line, flush=True)
