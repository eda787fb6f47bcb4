"""The one builder: everything a TTSR training step needs, made from a `TrainConfig`.

`build_trainer(config)` is called by the training loop and by the benchmark
(`benchmarks/train_step.py`), so the benchmark times exactly the step a study runs. Every speed
knob is a `TrainConfig` field (the benchmark's "reference-equivalent" path is just another
config: `search_chunk=0`, `amp="off"`, `channels_last=False`, `fused_optim=False`,
`fast_kernels=False`, `log_every_steps=1`). A loss with weight 0 is never built, the WGAN-GP
critic only when `adv_w > 0`. The same seed gives the same initial weights whatever the speed
knobs say.
"""

from __future__ import annotations

import copy
import os
import random
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ttsr.checkpoint import CheckpointError, checkpoint_model_config, load_weights
from ttsr.config import ConfigError, TrainConfig
from ttsr.data.items import to_model_range
from ttsr.model import TTSR, ModelConfig
from ttsr.train.discriminator import Discriminator
from ttsr.train.losses import PerceptualDistance, PerceptualLoss
from ttsr.train.step import D_BETAS, LossWeights, StepLosses, TrainStep
from ttsr.vgg import random_vgg19_features, vgg19_features

IMAGE_KEYS = ("LR", "LR_up", "HR", "Ref", "Ref_downup")
# On CUDA without `log_every_steps`: how often the loop reads the loss sums to the host.
NAN_CHECK_STEPS = 50
# ... except in a run's first steps, which read the loss every step (a NaN canary: a fast path
# that breaks on real data shows at once, before `check_every` steps run on bad weights).
NAN_CANARY_STEPS = 20


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but no CUDA device is available")
    return torch.device(name)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. 'auto' = bf16 on CUDA, fp32 on the CPU (CPUs
    without bf16 units run bf16 convolutions slower than fp32)."""
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


def set_backend_flags(config: TrainConfig, device: torch.device) -> None:
    """Process-wide kernel selection. Off = PyTorch's defaults, which is how the reference runs
    (no cuDNN autotune, no TF32 for matmuls; cuDNN convolutions may use TF32 either way)."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = config.fast_kernels
    torch.backends.cuda.matmul.allow_tf32 = config.fast_kernels
    torch.backends.cudnn.allow_tf32 = True


def loss_weights(config: TrainConfig) -> LossWeights:
    return LossWeights(
        rec=config.rec_w,
        per=config.per_w,
        tpl=config.tpl_w,
        adv=config.adv_w,
        gan_k=config.gan_k,
        gp_weight=config.gp_weight,
        tpl_use_s=config.tpl_use_s,
        tpl_kind=config.tpl_loss,
    )


@dataclass
class Trainer:
    """The networks, losses, optimisers and step of one run, on one device."""

    config: TrainConfig
    device: torch.device
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format
    model: TTSR
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    step: TrainStep
    distance: PerceptualDistance  # the validation metric val_perceptual
    vgg_pretrained: bool  # ImageNet VGG19 weights were found (LTE init, losses, distance)
    perceptual: PerceptualLoss | None = None
    discriminator: nn.Module | None = None
    d_optimizer: torch.optim.Optimizer | None = None

    @property
    def check_every(self) -> int:
        """Steps between host reads of the loss sums (non-finite and spike checks, progress);
        every step on the CPU, where a read costs nothing."""
        if self.config.log_every_steps:
            return self.config.log_every_steps
        return 1 if self.device.type == "cpu" else NAN_CHECK_STEPS

    def check_due(self, run_steps: int, epoch_steps: int) -> bool:
        """Whether the loop reads the loss sums now (``run_steps``: this call's, resumed or not)."""
        return run_steps <= NAN_CANARY_STEPS or epoch_steps % self.check_every == 0

    def prepare(self, x: Tensor) -> Tensor:
        """A loader tensor on the device, as the model takes it: uint8 images become float32 in
        [-1, 1] there (`ttsr.data.items.to_model_range`), after the copy of a quarter the bytes."""
        x = to_model_range(x.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=self.memory_format)

    def autocast(self) -> Any:
        return self.step.autocast()

    def inputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, ...]:
        """(LR, LR_up, HR, Ref, Ref_downup) of a loader batch, on the device."""
        return tuple(self.prepare(batch[k]) for k in IMAGE_KEYS)

    def train_step(self, batch: dict[str, Tensor], *, init: bool = False) -> StepLosses:
        """One optimiser step (plus the critic's) on a loader batch; no host sync."""
        return self.step(*self.inputs(batch), init=init)

    @torch.no_grad()
    def infer(self, batch: dict[str, Tensor]) -> Tensor:
        """SR images (fp32, on the device) in eval mode; the caller restores train mode."""
        self.model.eval()
        lr, lr_up, _, ref, ref_downup = self.inputs(batch)
        # Compiled modules run eager here: an inference graph (and one per partial last batch)
        # would cost a compile each, for a pass that takes seconds per epoch.
        eager = torch.compiler.set_stance("force_eager") if self.config.compile else nullcontext()
        with self.autocast(), eager:
            return self.model(lr, lr_up, ref, ref_downup).sr.float()

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "discriminator": _state(self.discriminator),
            # The critic's FC is sized to the training crop: record it next to its weights.
            "discriminator_config": (
                self.discriminator.config() if self.discriminator is not None else None
            ),
            "d_optimizer": _state(self.d_optimizer),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.discriminator is not None:
            if state.get("discriminator") is None:
                raise ConfigError(
                    "adv_w: the checkpoint has no discriminator (it was trained with adv_w 0)"
                )
            self.discriminator.load_state_dict(state["discriminator"])
            self.d_optimizer.load_state_dict(state["d_optimizer"])


def _state(module: Any) -> dict[str, Any] | None:
    return module.state_dict() if module is not None else None


def build_trainer(config: TrainConfig, *, load_vgg: bool = True) -> Trainer:
    """Build everything for ``config`` (see the module docstring).

    load_vgg=False uses random VGG19 features without looking for ImageNet weights (the
    benchmark: speed does not depend on the weights).
    """
    device = resolve_device(config.device)
    set_backend_flags(config, device)
    cuda = device.type == "cuda"
    memory_format = (
        torch.channels_last if cuda and config.channels_last else torch.contiguous_format
    )
    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    torch.manual_seed(config.seed)

    features, pretrained = (
        vgg19_features(config.vgg_weights) if load_vgg else (random_vgg19_features(), False)
    )
    model = TTSR(
        ModelConfig(config.n_feats, config.res_blocks, config.res_scale),
        vgg=(copy.deepcopy(features), pretrained),  # the LTE trains its copy; losses stay frozen
        search_chunk=config.search_chunk,
        search_dtype=torch.bfloat16 if config.search_dtype == "bf16" else None,
        search_method=config.search_method,
    )
    if config.init_checkpoint is not None:
        _warm_start(model, config.init_checkpoint)
    model.MainNet.checkpoint_activations = config.checkpoint_activations
    model.use_fast_kernels(config.fast_kernels)
    model.to(device, memory_format=memory_format)
    perceptual = None
    if config.per_w > 0:
        perceptual = PerceptualLoss(features=features).to(device, memory_format=memory_format)
    distance = PerceptualDistance(features=features).to(device, memory_format=memory_format)
    discriminator = d_optimizer = None
    fused = config.fused_optim  # PyTorch has fused Adam kernels for CUDA and for the CPU
    if config.adv_w > 0:
        discriminator = Discriminator(crop_size=config.size).to(device, memory_format=memory_format)
        # As the reference: constant LR for the critic (no scheduler).
        d_optimizer = torch.optim.Adam(
            discriminator.parameters(), lr=config.lr_d, betas=D_BETAS, eps=config.eps, fused=fused
        )
    optimizer = torch.optim.Adam(
        [
            {"params": [p for p in model.MainNet.parameters() if p.requires_grad], "lr": config.lr},
            {"params": [p for p in model.LTE.parameters() if p.requires_grad], "lr": config.lr_lte},
        ],
        betas=(config.beta1, config.beta2),
        eps=config.eps,
        fused=fused,
    )
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=config.lr_decay_epochs, gamma=config.lr_gamma
    )
    if config.compile:
        # In place (nn.Module.compile): the state-dict keys stay those of the reference.
        # Static shapes: every training batch of a run has one shape (the last incomplete batch
        # of a pass is dropped), so a trial compiles one graph; validation and sample grids run
        # eager (`Trainer.infer`), so their no-grad graphs and partial batches compile nothing.
        # TTSR_COMPILE_BACKEND (scripts/gpu_check.sh --rehearse: aot_eager) traces and splits
        # the graphs as inductor would, without its C++/Triton code generation (minutes on a CPU).
        backend = os.environ.get("TTSR_COMPILE_BACKEND") or "inductor"
        model.MainNet.compile(dynamic=False, backend=backend)
        model.LTE.compile(dynamic=False, backend=backend)
    dtype = amp_dtype(config.amp, device)
    step = TrainStep(
        model=model,
        optimizer=optimizer,
        weights=loss_weights(config),
        device_type=device.type,
        amp_dtype=dtype,
        perceptual=perceptual,
        discriminator=discriminator,
        d_optimizer=d_optimizer,
    )
    model.train()
    return Trainer(
        config=config,
        device=device,
        amp_dtype=dtype,
        memory_format=memory_format,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        step=step,
        distance=distance,
        vgg_pretrained=bool(pretrained),
        perceptual=perceptual,
        discriminator=discriminator,
        d_optimizer=d_optimizer,
    )


def _warm_start(model: TTSR, path: str) -> None:
    """Fine-tuning: the weights of ``path``; a different architecture is a ConfigError."""
    try:
        found = checkpoint_model_config(path)
        if found.n_feats != model.config.n_feats or (
            found.num_res_blocks != model.config.num_res_blocks
        ):
            raise ConfigError(
                f"init_checkpoint: {path} holds n_feats {found.n_feats}, blocks "
                f"{found.blocks_string()}; the config asks for n_feats {model.config.n_feats}, "
                f"blocks {model.config.blocks_string()}"
            )
        load_weights(model, path)
    except CheckpointError as exc:
        raise ConfigError(f"init_checkpoint: {exc}") from None
