"""What a caller of `ttsr.train.train` can observe: callbacks, the run's info, its result.

The loop knows nothing of MLflow or Ray Tune: `ttsr.tracking.MlflowCallback` logs to MLflow,
`tune/execution/trainable.py` reports to Tune, a script can print. A callback implements any
of the three methods; the others do nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttsr.config import TrainConfig


@dataclass(frozen=True)
class RunInfo:
    """Handed to `Callback.on_train_start` once the run is set up (and resumed, if it was)."""

    config: TrainConfig
    tags: dict[str, str]  # device, vgg_pretrained, git_commit, warning, ...
    resumed: bool
    start_epoch: int  # the first epoch this call will run (0 = validation before training)
    out_dir: Path
    train_items: int
    val_items: int
    total_steps: int  # optimiser steps the run makes when it is not stopped early
    history: tuple[dict[str, Any], ...] = ()  # the epochs a resumed run already did


@dataclass
class TrainResult:
    stop_reason: str
    best_epoch: int
    best_val_psnr: float  # val_psnr of the kept epoch (chosen on config.early_stop_metric)
    history: list[dict[str, Any]] = field(default_factory=list)  # epoch 0 first
    best_checkpoint: Path | None = None  # checkpoints/best (holds state.pt and model.pt)
    stop_detail: str = ""
    stop_signal: str | None = None  # diverged: which check fired (names.DIVERGENCE_SIGNALS)


class Callback:
    """No-op base: override what you need."""

    def on_train_start(self, info: RunInfo) -> None:
        """The run is set up; nothing trained yet in this call."""

    def on_epoch_end(
        self, metrics: dict[str, Any], checkpoint_dir: Path, images: dict[str, Path]
    ) -> None:
        """After every epoch (epoch 0 included), once ``checkpoint_dir`` was written atomically.

        metrics: the `ttsr.names` keys; from the first kept epoch on also best_epoch and that
        epoch's quality as ``names.kept(metric)`` (best_val_psnr, ...); on the last epoch also
        stop_reason and stop_detail. images: sample grids written this epoch, by split
        ("train", "test").
        """

    def on_train_end(self, result: TrainResult) -> None:
        """The run ended normally (stopped early, out of epochs or budget, or diverged)."""
