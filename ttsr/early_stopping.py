"""When to stop training: patience on val_psnr, and divergence.

Divergence (stop at once, keep the best checkpoint) is any of:
- a non-finite training loss (the loop stops the epoch at the step it sees it);
- a collapsed output over the validation set: more than ``SATURATED_FRACTION`` of the SR values
  at +-1 (the seed's inpainting run turned white), or a mean per-image standard deviation below
  ``FLAT_STD`` (a constant image);
- val_psnr more than ``divergence_floor_db`` below its best, or not finite.

The stopper only decides; the training loop writes checkpoints, and it writes the best one only
when ``update`` says the epoch improved (a diverged epoch never does).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ttsr import names

SATURATED_FRACTION = 0.9
SATURATION_LEVEL = 1.0 - 1e-3  # |x| at or above this counts as saturated
FLAT_STD = 1e-3


class OutputCollapseMonitor:
    """Accumulates SR statistics over a validation pass without host syncs."""

    def __init__(self) -> None:
        self.saturated: torch.Tensor | float = 0.0
        self.values: int = 0
        self.std_sum: torch.Tensor | float = 0.0
        self.images: int = 0

    def update(self, sr: torch.Tensor) -> None:
        """sr: (N, C, H, W) in [-1, 1]."""
        sr = sr.detach().float()
        self.saturated = self.saturated + (sr.abs() >= SATURATION_LEVEL).sum()
        self.values += sr.numel()
        self.std_sum = self.std_sum + sr.flatten(1).std(dim=1).sum()
        self.images += sr.shape[0]

    def result(self) -> tuple[float, float]:
        """-> (fraction of saturated values, mean per-image std)."""
        if not self.images:
            return 0.0, float("inf")
        return float(self.saturated) / self.values, float(self.std_sum) / self.images

    def collapsed(self) -> str | None:
        """A one-line reason if the outputs collapsed, else None."""
        saturated, std = self.result()
        if saturated > SATURATED_FRACTION:
            return f"output collapsed: {saturated:.0%} of SR values saturated at +-1"
        if std < FLAT_STD:
            return f"output collapsed: mean per-image std {std:.2e} < {FLAT_STD:g}"
        return None


class EarlyStopper:
    """Patience on val_psnr plus divergence checks. Epochs are 1-based.

    ``update(epoch, val_psnr)`` returns True when the epoch is a new best (save it as best).
    ``stop_reason`` becomes ``names.STOP_PATIENCE`` / ``names.STOP_DIVERGED`` when training
    should stop, or ``names.STOP_MAX_EPOCHS`` via ``finish``; ``detail`` says why in words.
    """

    def __init__(
        self, *, patience: int | None, min_delta: float = 0.0, divergence_floor_db: float = 3.0
    ) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.divergence_floor_db = divergence_floor_db
        self.best_epoch = 0
        self.best_val_psnr = -math.inf
        self.bad_epochs = 0
        self.stop_reason: str | None = None
        self.detail = ""

    @property
    def should_stop(self) -> bool:
        return self.stop_reason is not None

    def diverge(self, detail: str) -> None:
        """Stop now (non-finite loss, collapsed output)."""
        self.stop_reason = names.STOP_DIVERGED
        self.detail = detail

    def update(self, epoch: int, val_psnr: float) -> bool:
        """Record one epoch's val_psnr. -> True if it is the new best."""
        if self.should_stop:
            return False
        if not math.isfinite(val_psnr):
            self.diverge(f"val_psnr is {val_psnr} at epoch {epoch}")
            return False
        if self.best_epoch and val_psnr < self.best_val_psnr - self.divergence_floor_db:
            self.diverge(
                f"val_psnr {val_psnr:.2f} dB at epoch {epoch} fell more than "
                f"{self.divergence_floor_db:g} dB below its best {self.best_val_psnr:.2f} dB "
                f"(epoch {self.best_epoch})"
            )
            return False
        if not self.best_epoch or val_psnr > self.best_val_psnr + self.min_delta:
            self.best_epoch, self.best_val_psnr, self.bad_epochs = epoch, val_psnr, 0
            return True
        self.bad_epochs += 1
        if self.patience is not None and self.bad_epochs >= self.patience:
            self.stop_reason = names.STOP_PATIENCE
            self.detail = (
                f"no val_psnr improvement > {self.min_delta:g} dB for {self.bad_epochs} epochs "
                f"(best {self.best_val_psnr:.2f} dB at epoch {self.best_epoch})"
            )
        return False

    def finish(self) -> None:
        """Training ran out of epochs without another reason to stop."""
        if self.stop_reason is None:
            self.stop_reason = names.STOP_MAX_EPOCHS
            self.detail = "reached the maximum number of epochs"

    def state_dict(self) -> dict[str, Any]:
        return {
            "patience": self.patience,
            "min_delta": self.min_delta,
            "divergence_floor_db": self.divergence_floor_db,
            "best_epoch": self.best_epoch,
            "best_val_psnr": self.best_val_psnr,
            "bad_epochs": self.bad_epochs,
            "stop_reason": self.stop_reason,
            "detail": self.detail,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The thresholds come from the (possibly changed) config of the resumed run; only the
        # progress is restored.
        self.best_epoch = int(state["best_epoch"])
        self.best_val_psnr = float(state["best_val_psnr"])
        self.bad_epochs = int(state["bad_epochs"])
        self.stop_reason = state["stop_reason"]
        self.detail = str(state["detail"])
