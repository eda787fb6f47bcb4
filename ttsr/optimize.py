"""The two ways to run a TTSR training step that the benchmark and its tests compare.

- `REFERENCE`: the model run the way researchmm/TTSR runs it — fp32, the dense relevance search
  and unfold/fold transfer (`search_chunk=0`), eager, contiguous tensors, plain Adam, PyTorch's
  default kernel selection, and the loss read back to the host every step.
- `optimised(device)`: what this project runs — the chunked search and gather transfer
  (`ttsr.search`), and on CUDA additionally bf16 search matmuls (patches normalised in fp32),
  bf16 autocast, channels_last, fused Adam, cuDNN autotuning with TF32 matmuls; optionally
  `torch.compile` of MainNet and LTE; no host syncs inside the step.

`TrainingStep` builds the networks, losses and optimisers for one `PathSettings` and runs
`ttsr.step.TrainStep` on them, the step `ttsr.train` runs: one generator step plus the WGAN-GP
critic steps when the adversarial loss is on. Both paths draw the same initial weights for the
same seed: the settings change how the step is computed, never what it computes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from ttsr import names
from ttsr.discriminator import Discriminator
from ttsr.losses import PerceptualLoss
from ttsr.model import TTSR, ModelConfig, TTSROutput
from ttsr.step import D_BETAS, LossWeights, TrainStep
from ttsr.vgg import random_vgg19_features


@dataclass(frozen=True)
class PathSettings:
    """How a step is computed; none of these change the model's weights or losses."""

    search_chunk: int | None = None  # 0 = dense reference search + transfer, None = auto chunk
    search_bf16: bool = False  # bf16 relevance matmuls (normalisation and running max in fp32)
    amp_bf16: bool = False  # torch.autocast(dtype=bfloat16) around forward and losses
    channels_last: bool = False  # NHWC weights and inputs (tensor cores want NHWC convs)
    fused_adam: bool = False  # one fused kernel per optimiser step instead of per-tensor ops
    compile: bool = False  # torch.compile of MainNet and LTE (the conv stacks)
    fast_kernels: bool = False  # CUDA: cudnn.benchmark and TF32 matmuls
    sync_each_step: bool = True  # read the loss on the host every step (a GPU pipeline stall)


REFERENCE = PathSettings(search_chunk=0, sync_each_step=True)


def optimised(device: torch.device | str, *, compile: bool = False) -> PathSettings:
    """The optimised path on `device`: on the CPU only the device-neutral parts.

    bf16 autocast, channels_last and fused Adam are what `ttsr.train` turns on for CUDA only
    (CPUs without bf16 units run bf16 convs slower than fp32; see docs/BENCHMARKS.md).
    """
    cuda = torch.device(device).type == "cuda"
    return PathSettings(
        search_chunk=None,
        search_bf16=cuda,
        amp_bf16=cuda,
        channels_last=cuda,
        fused_adam=cuda,
        compile=compile,
        fast_kernels=cuda,
        sync_each_step=False,
    )


def ablation_steps(*, compile: bool = False) -> list[tuple[str, PathSettings]]:
    """Cumulative steps from the reference path to the fully optimised one (any device)."""
    steps = [("reference (dense, fp32, eager)", REFERENCE)]

    def add(label: str, **changes: Any) -> None:
        steps.append((label, replace(steps[-1][1], **changes)))

    add("+ chunked search", search_chunk=None)
    add("+ no host sync per step", sync_each_step=False)
    add("+ cudnn autotune / TF32", fast_kernels=True)
    add("+ channels_last", channels_last=True)
    add("+ bf16 autocast", amp_bf16=True)
    add("+ bf16 search matmuls", search_bf16=True)
    add("+ fused Adam", fused_adam=True)
    if compile:
        add("+ torch.compile", compile=True)
    return steps


def set_backend_flags(settings: PathSettings, device: torch.device) -> None:
    """Global kernel-selection flags for `settings` (process-wide: set before each run)."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = settings.fast_kernels
    # "highest" = PyTorch's default (no TF32 for matmuls), which is how the reference runs.
    torch.set_float32_matmul_precision("high" if settings.fast_kernels else "highest")


REC_ONLY = LossWeights()
# The reference's full TTSR recipe.
ALL_LOSSES = LossWeights(per=1e-2, tpl=1e-2, adv=1e-3)
# `TrainingStep.step`'s short keys for `TrainStep`'s names.LOSS_* ("d": the last critic step).
SHORT_KEYS = {
    names.LOSS_REC: "rec",
    names.LOSS_PER: "per",
    names.LOSS_TPL: "tpl",
    names.LOSS_ADV: "adv",
    names.LOSS_TOTAL: "total",
}


class TrainingStep:
    """Networks, losses and optimisers for one path; `step(...)` runs one training step.

    Same initial weights for the same `seed` whatever the settings. VGG weights are random
    (speed and the path comparison do not depend on them; nothing is looked up on disk).
    """

    def __init__(
        self,
        *,
        model_config: ModelConfig,
        weights: LossWeights,
        settings: PathSettings,
        device: torch.device | str,
        seed: int = 0,
        lr: float = 1e-4,
        lr_lte: float = 1e-5,
        lr_d: float = 1e-4,
    ) -> None:
        self.device = torch.device(device)
        self.settings = settings
        self.weights = weights
        cuda = self.device.type == "cuda"
        if settings.amp_bf16 and not (cuda or self.device.type == "cpu"):
            raise ValueError(f"amp_bf16: no bf16 autocast on device {self.device}")
        self.memory_format = (
            torch.channels_last if settings.channels_last else torch.contiguous_format
        )

        torch.manual_seed(seed)
        self.model = TTSR(
            model_config,
            load_vgg=False,
            search_chunk=settings.search_chunk,
            search_dtype=torch.bfloat16 if settings.search_bf16 else None,
        ).to(self.device, memory_format=self.memory_format)
        self.perceptual = None
        if weights.per > 0:
            self.perceptual = PerceptualLoss(features=random_vgg19_features()).to(
                self.device, memory_format=self.memory_format
            )
        self.discriminator = None
        self.d_optimizer = None
        if weights.adv > 0:
            self.discriminator = Discriminator().to(self.device, memory_format=self.memory_format)
            self.d_optimizer = torch.optim.Adam(
                self.discriminator.parameters(), lr=lr_d, betas=D_BETAS, fused=settings.fused_adam
            )
        self.optimizer = torch.optim.Adam(
            [
                {"params": [p for p in self.model.MainNet.parameters()], "lr": lr},
                {
                    "params": [p for p in self.model.LTE.parameters() if p.requires_grad],
                    "lr": lr_lte,
                },
            ],
            fused=settings.fused_adam,
        )
        if settings.compile:
            # In place (nn.Module.compile): state-dict keys stay those of the reference.
            self.model.MainNet.compile()
            self.model.LTE.compile()
        self.model.train()
        self.train_step = TrainStep(
            model=self.model,
            optimizer=self.optimizer,
            weights=weights,
            device_type=self.device.type,
            amp_dtype=torch.bfloat16 if settings.amp_bf16 else None,
            perceptual=self.perceptual,
            discriminator=self.discriminator,
            d_optimizer=self.d_optimizer,
        )

    def autocast(self) -> Any:
        return self.train_step.autocast()

    def prepare(self, x: Tensor) -> Tensor:
        return x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    @torch.no_grad()
    def infer(self, lr: Tensor, lr_up: Tensor, ref: Tensor, ref_downup: Tensor) -> TTSROutput:
        """Forward pass in eval mode (validation); inputs already prepared."""
        self.model.eval()
        try:
            with self.autocast():
                return self.model(lr, lr_up, ref, ref_downup)
        finally:
            self.model.train()

    def step(
        self, lr: Tensor, lr_up: Tensor, hr: Tensor, ref: Tensor, ref_downup: Tensor
    ) -> dict[str, Tensor]:
        """One training step on prepared inputs; returns detached fp32 loss tensors (no sync).

        lr (N, 3, h, w); lr_up, hr, ref, ref_downup (N, 3, 4h, 4w); all in [-1, 1].
        """
        losses = self.train_step(lr, lr_up, hr, ref, ref_downup)
        out = {SHORT_KEYS[k]: v for k, v in losses.generator.items()}
        if losses.critic:
            out["d"] = losses.critic[-1]
        return out
