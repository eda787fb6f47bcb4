"""When to stop training: patience on a validation PSNR, and divergence where it happens.

Each divergence signal (``names.DIVERGENCE_SIGNALS``: when it fires and where it is checked) is
in docs/TRAINING.md's table; ``detail`` says which fired, in words. The stopper only decides:
the loop writes checkpoints, the best one only when ``update`` says the epoch improved (a
diverged epoch never does).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from ttsr import names
from ttsr.config import DEFAULT_DIVERGENCE_EPOCHS, DEFAULT_MIN_DELTA_DB

SATURATED_FRACTION = 0.9
SATURATION_LEVEL = 1.0 - 1e-3  # |x| at or above this counts as saturated (+ side: white)
FLAT_STD = 1e-3
SPIKE_WINDOW = 50  # steps in the running median
SPIKE_MIN_HISTORY = 10  # steps before the spike check starts


def white_pixels(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) bool: all three channels saturated white."""
    return (x >= SATURATION_LEVEL).all(dim=1, keepdim=True)


@dataclass
class OutputStats:
    """Health of the SR images over one validation pass."""

    saturated: float = 0.0  # share of SR values at +-1
    mean_std: float = math.inf  # mean per-image standard deviation of SR
    white: float = 0.0  # share of SR pixels white
    white_mask: float | None = None  # the same inside the inpainting box
    target_white: float = 0.0  # share of HR pixels white (what a perfect model outputs)
    target_white_mask: float | None = None


class DeviceSums:
    """Running sums that stay on the device until `read` (the one host sync)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, key: str, value: torch.Tensor) -> None:
        value = value.double().sum()
        self.sums[key] = self.sums[key] + value if key in self.sums else value

    def read(self) -> dict[str, float]:
        if not self.sums:
            return {}
        return dict(zip(self.sums, torch.stack(list(self.sums.values())).tolist(), strict=True))


class OutputCollapseMonitor(DeviceSums):
    """SR (and target) statistics over a validation pass, without host syncs."""

    def __init__(self) -> None:
        super().__init__()
        self.values = self.pixels = self.images = 0

    def update(
        self,
        sr: torch.Tensor,
        hr: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> None:
        """sr, hr: (N, 3, H, W) in [-1, 1]; mask: (N, 1, H, W) of 0/1 (inpainting box)."""
        sr = sr.detach().float()
        self.add("saturated", sr.abs() >= SATURATION_LEVEL)
        self.add("std", sr.flatten(1).std(dim=1))
        sr_white = white_pixels(sr)
        self.add("white", sr_white)
        if hr is not None:
            self.add("target_white", white_pixels(hr.float()))
        if mask is not None:
            box = mask.bool()
            self.add("white_mask", sr_white & box)
            self.add("mask_pixels", box)
            if hr is not None:
                self.add("target_white_mask", white_pixels(hr.float()) & box)
        self.values += sr.numel()
        self.pixels += sr.shape[0] * sr.shape[2] * sr.shape[3]
        self.images += sr.shape[0]

    def stats(self) -> OutputStats:
        if not self.images:
            return OutputStats()
        s = self.read()
        box = max(s.get("mask_pixels", 0.0), 1.0)
        return OutputStats(
            saturated=s["saturated"] / self.values,
            mean_std=s["std"] / self.images,
            white=s["white"] / self.pixels,
            white_mask=s["white_mask"] / box if "white_mask" in s else None,
            target_white=s.get("target_white", 0.0) / self.pixels,
            target_white_mask=s["target_white_mask"] / box if "target_white_mask" in s else None,
        )

    def collapsed(self) -> str | None:
        return collapse_reason(self.stats())


def collapse_reason(stats: OutputStats) -> str | None:
    """A one-line reason if the outputs collapsed (white/black or constant), else None."""
    if stats.saturated > SATURATED_FRACTION:
        return f"output collapsed: {stats.saturated:.0%} of SR values saturated at +-1"
    if stats.mean_std < FLAT_STD:
        return f"output collapsed: mean per-image std {stats.mean_std:.2e} < {FLAT_STD:g}"
    return None


def whitening_reason(stats: OutputStats, baseline: OutputStats, rise: float) -> str | None:
    """A one-line reason if the share of white pixels rose more than ``rise`` above its
    baseline (max of the targets' share and the epoch-0 share), overall or in the box."""
    checks = [("of the output", stats.white, baseline.white, baseline.target_white)]
    if stats.white_mask is not None:  # the box first: it turns white before the whole image
        box = (stats.white_mask, baseline.white_mask or 0.0, baseline.target_white_mask or 0.0)
        checks.insert(0, ("inside the inpainting box", *box))
    for where, share, at_start, in_targets in checks:
        base = max(at_start, in_targets)
        if share > base + rise:
            return (
                f"whitening: {share:.1%} of the pixels {where} are white (baseline {base:.1%}: "
                f"{at_start:.1%} at epoch 0, {in_targets:.1%} in the targets)"
            )
    return None


class LossSpikeMonitor:
    """Finite losses far above their running median (a blow-up that is not yet a NaN)."""

    def __init__(self, factor: float | None) -> None:
        self.factor = factor
        self.recent: deque[float] = deque(maxlen=SPIKE_WINDOW)

    def update(self, losses: list[float], *, first_step: int) -> str | None:
        """Check and record ``losses`` of steps ``first_step, first_step + 1, ...``."""
        for i, value in enumerate(losses):
            if self.factor is not None and len(self.recent) >= SPIKE_MIN_HISTORY:
                median = statistics.median(self.recent)
                if math.isfinite(value) and median > 0 and value > self.factor * median:
                    return (
                        f"loss spike at step {first_step + i}: {value:.4g} is "
                        f"{value / median:.0f}x the running median {median:.4g} "
                        f"(spike_factor {self.factor:g})"
                    )
            self.recent.append(value)
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"recent": list(self.recent)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent.clear()
        self.recent.extend(float(v) for v in state["recent"])


@dataclass(kw_only=True)
class EarlyStopper:
    """Patience on one validation PSNR plus divergence checks. Epoch 0 is the untrained model.

    ``update(epoch, val_psnr)`` returns True when the epoch is a new best (save it as best);
    with ``keep_last`` every healthy epoch is kept (``best_epoch`` follows the last one, while
    ``best_val_psnr`` stays the peak the divergence floor measures from).
    ``stop_reason`` becomes ``names.STOP_PATIENCE`` / ``names.STOP_DIVERGED`` when training
    should stop, or ``names.STOP_MAX_EPOCHS`` via ``finish``; ``detail`` says why in words.
    """

    patience: int | None
    min_delta: float = DEFAULT_MIN_DELTA_DB
    divergence_floor_db: float = 3.0
    divergence_epochs: int = DEFAULT_DIVERGENCE_EPOCHS
    metric: str = names.VAL_PSNR
    keep_last: bool = False
    # The progress (`state_dict`; the thresholds above come from the resumed run's config).
    has_best: bool = False
    best_epoch: int = 0
    best_val_psnr: float = -math.inf
    peak_epoch: int = 0  # the epoch of best_val_psnr (= best_epoch unless keep_last)
    start_val_psnr: float = -math.inf  # the first value seen (epoch 0: before training)
    bad_epochs: int = 0
    below_floor: int = 0  # validations in a row more than the floor below the best
    stop_reason: str | None = None
    detail: str = ""
    signal: str | None = None  # diverged: one of names.DIVERGENCE_SIGNALS

    @property
    def should_stop(self) -> bool:
        return self.stop_reason is not None

    def diverge(self, detail: str, signal: str) -> None:
        """Stop now; ``signal`` names the check (one of names.DIVERGENCE_SIGNALS)."""
        if signal not in names.DIVERGENCE_SIGNALS:
            raise ValueError(f"unknown divergence signal {signal!r}")
        self.stop_reason = names.STOP_DIVERGED
        self.detail = detail
        self.signal = signal

    def update(self, epoch: int, val_psnr: float) -> bool:
        """Record one epoch's watched PSNR. -> True if it is the new best."""
        if self.should_stop:
            return False
        if not math.isfinite(val_psnr):
            self.diverge(f"{self.metric} is {val_psnr} at epoch {epoch}", "non_finite_psnr")
            return False
        if not self.has_best:
            self.start_val_psnr = val_psnr
        floor = self.divergence_floor_db
        if self.has_best and val_psnr < self.best_val_psnr - floor:
            self.below_floor += 1
            below_start = val_psnr < self.start_val_psnr - floor
            if below_start or self.below_floor >= self.divergence_epochs:
                self.diverge(self._floor_detail(epoch, val_psnr, below_start), "psnr_floor")
                return False
        else:
            self.below_floor = 0
        if not self.has_best or val_psnr > self.best_val_psnr + self.min_delta:
            self.has_best = True
            self.best_epoch, self.best_val_psnr, self.bad_epochs = epoch, val_psnr, 0
            self.peak_epoch = epoch
            return True
        if self.keep_last:  # kept, though not the peak (the floor still measures from it)
            self.best_epoch = epoch
            return True
        self.bad_epochs += 1
        if self.patience is not None and self.bad_epochs >= self.patience:
            self.stop_reason = names.STOP_PATIENCE
            self.detail = (
                f"no {self.metric} improvement > {self.min_delta:g} dB for {self.bad_epochs} "
                f"epochs (best {self.best_val_psnr:.2f} dB at epoch {self.peak_epoch})"
            )
        return False

    def _floor_detail(self, epoch: int, val_psnr: float, below_start: bool) -> str:
        best = f"{self.best_val_psnr:.2f} dB (epoch {self.peak_epoch})"
        fell = (
            f"{self.metric} {val_psnr:.2f} dB at epoch {epoch} fell more than "
            f"{self.divergence_floor_db:g} dB below its best {best}"
        )
        if below_start:
            return f"{fell}, below where the run started ({self.start_val_psnr:.2f} dB)"
        return f"{fell}, for {self.below_floor} validations in a row"

    def finish(self) -> None:
        """Training ran out of epochs (or its budget) without another reason to stop."""
        if self.stop_reason is None:
            self.stop_reason = names.STOP_MAX_EPOCHS
            self.detail = "reached the maximum number of epochs"

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.has_best = bool(state.get("has_best", state["best_epoch"] > 0))
        self.best_epoch = int(state["best_epoch"])
        self.best_val_psnr = float(state["best_val_psnr"])
        self.peak_epoch = int(state.get("peak_epoch", self.best_epoch))
        self.bad_epochs = int(state["bad_epochs"])
        # checkpoints from before the sustained floor: the best stood in for the start
        self.start_val_psnr = float(state.get("start_val_psnr", self.best_val_psnr))
        self.below_floor = int(state.get("below_floor", 0))
        self.stop_reason = state["stop_reason"]
        self.detail = str(state["detail"])
        self.signal = state.get("signal")
