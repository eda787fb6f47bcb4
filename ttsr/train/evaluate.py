"""Validation: PSNR/SSIM/perceptual distance on the test split, per reference mode.

The run's own reference mode gives `val_psnr`, `val_ssim` (the reference code's convention: Y
channel, no crop), `val_psnr_rgb_c4`, `val_ssim_rgb_c4` (MMagic's: RGB, 4-pixel border crop),
`val_perceptual` (and in inpainting `val_psnr_mask` / `val_psnr_outside`), and the output's
health for the divergence checks (`ttsr.train.early_stopping`). Each extra mode of
`val_ref_modes` gives the same metrics named with `names.for_ref_mode` (e.g. `val_psnr_other`,
an unseen reference): how much of the quality comes from copying the reference.
One host sync per pass: sums stay on the device until the end.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate, groupby, pairwise
from operator import itemgetter
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from ttsr import names
from ttsr.config import TrainConfig
from ttsr.data.items import to_model_range
from ttsr.data.loading import loader_options
from ttsr.data.source import open_dataset_from_config
from ttsr.metrics import RGB_CROP, SSIM_WINDOW, psnr, psnr_rgb, ssim, ssim_rgb, to_y
from ttsr.train.early_stopping import DeviceSums, OutputCollapseMonitor, OutputStats

if TYPE_CHECKING:
    from ttsr.train.trainer import Trainer

PSNR_CAP = 100.0  # identical images have infinite PSNR; cap per image so means stay finite


def masked_psnr(sr: Tensor, hr: Tensor, mask: Tensor) -> Tensor:
    """PSNR (the reference's luma difference) over the pixels where mask is 1.

    sr, hr: (N, 3, H, W) in [-1, 1]; mask: (N, 1, H, W) of 0/1. -> (N,)
    """
    se = ((to_y(sr) - to_y(hr)) / 255.0).pow(2)
    m = mask.to(se.dtype)
    mse = (se * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1.0)
    return (-10.0 * torch.log10(mse)).clamp(max=PSNR_CAP)


@dataclass
class Validation:
    metrics: dict[str, float]
    output: OutputStats = field(default_factory=OutputStats)


class Evaluator:
    """The validation sets of a config (its own ref mode first) and the pass over them.

    One DataLoader reads every set (laid end to end in a `ConcatDataset`; no batch crosses from
    one set into the next), so its workers — started once per run when there are any
    (ttsr.data.loading) — serve every reference mode instead of a pool per mode."""

    def __init__(self, config: TrainConfig, *, device: torch.device | None = None) -> None:
        # Workers, pinning and persistence as the training loader's (ttsr.data.loading).
        options = loader_options(config.num_workers, device or torch.device("cpu"))
        self.inpaint = config.inpaint
        self.datasets: dict[str, Dataset] = {}
        for mode in (config.ref_mode, *config.val_ref_modes):
            dataset = open_dataset_from_config(config, "test", ref_mode=mode)
            if config.val_limit is not None and config.val_limit < len(dataset):
                dataset = Subset(dataset, range(config.val_limit))
            self.datasets[mode] = dataset
        sets, size = list(self.datasets.values()), config.batch_size
        starts = list(accumulate((len(d) for d in sets), initial=0))
        self._plan = [  # (mode, item indices) of every batch, in order
            (mode, list(range(first, min(first + size, end))))
            for mode, (start, end) in zip(self.datasets, pairwise(starts), strict=True)
            for first in range(start, end, size)
        ]
        # The loader's batch sampler, refilled by `batches`: the loader iterates it in the main
        # process each time an iteration starts, so that works with persistent workers too.
        self._order: list[list[int]] = []
        self.loader = DataLoader(ConcatDataset(sets), batch_sampler=self._order, **options)
        self.primary = config.ref_mode

    def batches(self, mode: str | None = None) -> Iterator[tuple[str, dict[str, Tensor]]]:
        """(mode, batch) over every set in order, or over ``mode``'s set alone."""
        plan = [(m, indices) for m, indices in self._plan if mode in (None, m)]
        self._order[:] = [indices for _, indices in plan]
        for (m, _), batch in zip(plan, self.loader, strict=True):
            yield m, batch

    def missing_metrics(self) -> dict[str, float]:
        """NaN for every metric a pass reports (a diverged epoch is not validated)."""
        base = [names.VAL_PSNR, names.VAL_SSIM, names.VAL_LPIPS_PROXY]
        base += [names.VAL_PSNR_RGB_C4, names.VAL_SSIM_RGB_C4]  # the literature's 2nd convention
        if self.inpaint:
            base += [names.VAL_PSNR_MASK, names.VAL_PSNR_OUTSIDE]
        out = [*base, names.VAL_WHITE_SHARE]
        if self.inpaint:
            out.append(names.VAL_WHITE_SHARE_MASK)
        for mode in self.datasets:
            if mode != self.primary:
                out += [names.for_ref_mode(m, mode) for m in base]
        return dict.fromkeys(out, math.nan)

    @property
    def images(self) -> int:
        return len(self.datasets[self.primary])

    @torch.no_grad()
    def bicubic_psnr(self, device: torch.device) -> float:
        """PSNR of plain bicubic upsampling (LR_up) against HR on the validation images."""
        sums, count = DeviceSums(), 0
        for _, batch in self.batches(self.primary):
            hr = to_model_range(batch["HR"].to(device))
            lr_up = to_model_range(batch["LR_up"].to(device))
            sums.add("psnr", psnr(lr_up, hr).clamp(max=PSNR_CAP))
            count += hr.shape[0]
        return sums.read()["psnr"] / count

    @torch.no_grad()
    def __call__(self, trainer: Trainer) -> Validation:
        """Validate ``trainer`` on every set (eval mode; the caller restores train mode)."""
        metrics: dict[str, float] = {}
        output = OutputStats()
        for mode, group in groupby(self.batches(), key=itemgetter(0)):
            primary = mode == self.primary
            health = OutputCollapseMonitor() if primary else None
            batches = (batch for _, batch in group)
            for key, value in self._pass(trainer, batches, health).items():
                metrics[key if primary else names.for_ref_mode(key, mode)] = value
            if health is not None:
                output = health.stats()
                metrics[names.VAL_WHITE_SHARE] = output.white
                if output.white_mask is not None:
                    metrics[names.VAL_WHITE_SHARE_MASK] = output.white_mask
        return Validation(metrics=metrics, output=output)

    def _pass(
        self,
        trainer: Trainer,
        batches: Iterable[dict[str, Tensor]],
        health: OutputCollapseMonitor | None,
    ) -> dict[str, float]:
        sums, images = DeviceSums(), 0
        for batch in batches:
            sr = trainer.infer(batch)
            hr = trainer.prepare(batch["HR"]).float()
            sums.add(names.VAL_PSNR, psnr(sr, hr).clamp(max=PSNR_CAP))
            sums.add(names.VAL_SSIM, ssim(sr, hr))
            sums.add(names.VAL_PSNR_RGB_C4, psnr_rgb(sr, hr).clamp(max=PSNR_CAP))
            if min(hr.shape[-2:]) - 2 * RGB_CROP >= SSIM_WINDOW:
                sums.add(names.VAL_SSIM_RGB_C4, ssim_rgb(sr, hr))
            sums.add(names.VAL_LPIPS_PROXY, trainer.distance(sr, hr))
            mask = batch["mask"].to(trainer.device) if self.inpaint else None
            if mask is not None:
                sums.add(names.VAL_PSNR_MASK, masked_psnr(sr, hr, mask))
                sums.add(names.VAL_PSNR_OUTSIDE, masked_psnr(sr, hr, 1.0 - mask))
            if health is not None:
                health.update(sr, hr, mask)
            images += hr.shape[0]
        out = {k: v / images for k, v in sums.read().items()}
        # under 19 px no SSIM window fits the 4-px crop: NaN, as the metric is not defined there
        out.setdefault(names.VAL_SSIM_RGB_C4, math.nan)
        return out
