"""The state of a training run that a checkpoint saves and a resume restores, as one object.

`TrainingState.state_dict()` is what `checkpoints/latest/state.pt` holds: the trainer's
networks, optimisers and schedule, the run's progress (epoch, step, images seen, history),
the epoch-0 baseline, the early stopper and the loss-spike window, the RNG states (torch, CUDA,
NumPy, Python), and the config. Everything is tensors and primitives, so
`torch.load(weights_only=True)` reads it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ttsr import names
from ttsr.checkpoint import rng_state, set_rng_state
from ttsr.train.early_stopping import EarlyStopper, LossSpikeMonitor, OutputStats
from ttsr.train.trainer import Trainer


@dataclass
class TrainingState:
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
