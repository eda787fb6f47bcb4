"""One TTSR training step, the one `ttsr.train` runs and `benchmarks/train_step.py` times.

`TrainStep(batch)` runs, in this order: the generator forward (under autocast), the critic's
WGAN-GP update `gan_k` times on the detached output (written out here, not hidden inside a
loss as in the reference's `AdversarialLoss`), then the generator update on the weighted
losses (reconstruction, perceptual, transferal perceptual, adversarial).

It owns no networks: the caller builds the model, the losses and the optimisers (and decides
which losses exist: a loss with weight 0 is never built) and hands them in. It reads nothing
back to the host: the losses come back as detached fp32 device tensors, so a caller that
accumulates them on the device runs the step without a single host sync on CUDA.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ttsr import names
from ttsr.model import TTSR
from ttsr.train.losses import (
    discriminator_wgan_loss,
    generator_adversarial_loss,
    gradient_penalty,
    reconstruction_loss,
    transferal_perceptual_loss,
)

D_BETAS = (0.0, 0.9)  # the reference's critic Adam betas; floats: its int 0 crashes PyTorch 2.x


@dataclass(frozen=True)
class LossWeights:
    """Generator loss weights and the critic schedule (`TrainConfig`'s *_w, gan_k, ...)."""

    rec: float = 1.0
    per: float = 0.0
    tpl: float = 0.0
    adv: float = 0.0
    gan_k: int = 2  # critic steps per generator step
    gp_weight: float = 10.0
    tpl_use_s: bool = False  # weight the transferal perceptual loss by sigmoid(S)
    tpl_kind: str = "l2"  # "l2" or "l1"


@dataclass
class StepLosses:
    """Detached fp32 scalar device tensors of one step (reading them syncs on CUDA)."""

    # names.LOSS_TOTAL and the generator terms that ran this step (names.LOSS_REC, ...).
    generator: dict[str, Tensor]
    # The critic's WGAN-GP loss after each of its gan_k updates; empty when it did not run.
    critic: list[Tensor] = field(default_factory=list)


class TrainStep:
    """One generator step plus its critic steps, on networks and optimisers built elsewhere.

    model: the TTSR to train; forward: what runs it (e.g. `torch.compile(model)`), default the
        model itself. optimizer: the generator's (MainNet and LTE parameters).
    perceptual: the perceptual loss module, or None when its weight is 0.
    discriminator, d_optimizer: the critic and its optimiser, or None when adv is 0.
    amp_dtype: autocast dtype for the forward and the losses (None = fp32). fp16 gets loss
        scaling (one GradScaler each for generator and critic); bf16 and fp32 need none.
    rec_loss: the reconstruction loss function (default: the reference's L1).
    """

    def __init__(
        self,
        *,
        model: TTSR,
        optimizer: torch.optim.Optimizer,
        weights: LossWeights,
        device_type: str,
        amp_dtype: torch.dtype | None = None,
        forward: Callable[..., Any] | None = None,
        perceptual: nn.Module | None = None,
        discriminator: nn.Module | None = None,
        d_optimizer: torch.optim.Optimizer | None = None,
        rec_loss: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> None:
        if (discriminator is None) != (d_optimizer is None):
            raise ValueError("discriminator and d_optimizer: give both or neither")
        self.model = model
        self.forward = forward if forward is not None else model
        self.optimizer = optimizer
        self.weights = weights
        self.device_type = device_type
        self.amp_dtype = amp_dtype
        self.perceptual = perceptual
        self.discriminator = discriminator
        self.d_optimizer = d_optimizer
        # The WGAN-GP double backward under bf16 autocast; `ttsr.fast_paths` may switch it off.
        self.gp_autocast = True
        # Looked up when the step is built: a test can swap `ttsr.train.step.reconstruction_loss`.
        self.rec_loss = rec_loss if rec_loss is not None else reconstruction_loss
        fp16 = amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(device_type, enabled=fp16)
        self.d_scaler = torch.amp.GradScaler(device_type, enabled=fp16)

    def autocast(self) -> Any:
        return torch.autocast(
            self.device_type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
        )

    def __call__(
        self,
        lr: Tensor,
        lr_up: Tensor,
        hr: Tensor,
        ref: Tensor,
        ref_downup: Tensor,
        *,
        init: bool = False,
    ) -> StepLosses:
        """One training step on inputs already on the device; no host sync.

        lr (N, 3, h, w); lr_up, hr, ref, ref_downup (N, 3, 4h, 4w); all in [-1, 1].
        init: a reconstruction-only warm-up step (no perceptual, transferal or adversarial
            terms, no critic update).
        """
        w = self.weights
        with self.autocast():
            out = self.forward(lr, lr_up, ref, ref_downup)
        sr = out.sr
        use_adv = self.discriminator is not None and not init
        result = StepLosses(generator={})

        # Critic steps, WGAN-GP, on the detached output.
        if use_adv:
            d, d_optimizer = self.discriminator, self.d_optimizer
            d.requires_grad_(True)
            fake = sr.detach()
            for _ in range(w.gan_k):
                d_optimizer.zero_grad(set_to_none=True)
                with self.autocast():
                    loss_d = discriminator_wgan_loss(d(hr), d(fake))
                # fp16 would need the penalty's inner gradient unscaled: compute it in fp32.
                with torch.autocast(
                    self.device_type,
                    dtype=self.amp_dtype,
                    enabled=self.gp_autocast and self.amp_dtype == torch.bfloat16,
                ):
                    loss_d = loss_d + w.gp_weight * gradient_penalty(d, hr, fake)
                self.d_scaler.scale(loss_d).backward()
                self.d_scaler.step(d_optimizer)
                self.d_scaler.update()
                result.critic.append(loss_d.detach().float())
            # The generator's adversarial term must not accumulate critic gradients.
            d.requires_grad_(False)

        # Generator step on the weighted losses.
        losses = result.generator
        with self.autocast():
            total = sr.new_zeros((), dtype=torch.float32)
            if w.rec > 0:
                loss = self.rec_loss(sr, hr)
                total = total + w.rec * loss
                losses[names.LOSS_REC] = loss.detach().float()
            if self.perceptual is not None and not init:
                loss = self.perceptual(sr, hr)
                total = total + w.per * loss
                losses[names.LOSS_PER] = loss.detach().float()
            if w.tpl > 0 and not init:
                loss = transferal_perceptual_loss(
                    self.model.texture_features(sr),
                    (out.T_lv1, out.T_lv2, out.T_lv3),
                    out.S if w.tpl_use_s else None,
                    kind=w.tpl_kind,
                )
                total = total + w.tpl * loss
                losses[names.LOSS_TPL] = loss.detach().float()
            if use_adv:
                loss = generator_adversarial_loss(self.discriminator(sr))
                total = total + w.adv * loss
                losses[names.LOSS_ADV] = loss.detach().float()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        losses[names.LOSS_TOTAL] = total.detach().float()
        return result
