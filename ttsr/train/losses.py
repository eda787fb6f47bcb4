"""The generator's losses and a VGG-based perceptual distance for validation.

Each loss is a plain function or a small module; the training step decides which ones run
(a loss whose weight is 0 is never built nor called). The WGAN-GP discriminator loss lives here
as a function, but the discriminator's optimiser step is in the training loop, visibly — unlike
the reference, whose ``AdversarialLoss.forward`` steps its own optimiser as a side effect.

All images are in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Indices into torchvision's vgg19().features.
RELU5_1_END = 30  # features[:30] ends with relu5_1 (the reference's perceptual layer)
# relu1_2, relu2_2, relu3_4, relu4_4, relu5_4: the outputs the perceptual distance compares.
DISTANCE_LAYERS = (3, 8, 17, 26, 35)


def reconstruction_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """L1 between output and target. (N, 3, H, W) x2 -> scalar."""
    return F.l1_loss(sr, hr)


class _ImageNetInput(nn.Module):
    """[-1, 1] images -> ImageNet-normalised VGG input. (N, 3, H, W) -> same."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1.0) / 2.0 - self.mean) / self.std


def _frozen(module: nn.Module) -> nn.Module:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class PerceptualLoss(nn.Module):
    """MSE between VGG19 relu5_1 features of output and target (the reference's perceptual loss).

    ``features`` is torchvision's ``vgg19().features`` (as returned by ``ttsr.vgg.vgg19_features``);
    only ``features[:30]`` is used, frozen. Gradients flow into ``sr`` only.
    """

    def __init__(self, *, features: nn.Sequential) -> None:
        super().__init__()
        self.normalize = _ImageNetInput()
        self.vgg = _frozen(features[:RELU5_1_END])

    def train(self, mode: bool = True) -> PerceptualLoss:
        # The VGG stays in eval mode whatever the caller does (no dropout/BN in features, but a
        # frozen network should not change behaviour with the trainer's mode).
        super().train(mode)
        self.vgg.eval()
        return self

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """sr, hr: (N, 3, H, W) in [-1, 1] -> scalar."""
        sr_f = self.vgg(self.normalize(sr))
        with torch.no_grad():
            hr_f = self.vgg(self.normalize(hr))
        return F.mse_loss(sr_f, hr_f)


def transferal_perceptual_loss(
    sr_features: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    textures: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    S: torch.Tensor | None = None,
    *,
    kind: str = "l2",
) -> torch.Tensor:
    """Distance between the SR's texture features and the transferred textures, mean of 3 levels.

    sr_features: ``model.texture_features(sr)`` = (lv1 (N, C1, H, W), lv2 (N, C2, H/2, W/2),
        lv3 (N, C3, H/4, W/4)), computed through the frozen LTE copy so that this loss trains
        MainNet and not LTE.
    textures: (T_lv1, T_lv2, T_lv3) of the same shapes.
    S: the soft attention map (N, 1, H/4, W/4) or None. When given, both sides are weighted by
        sigmoid(S) (S upsampled bicubically x2 / x4 for levels 2 / 1), as the reference's
        ``use_S`` option.
    kind: "l2" (MSE) or "l1".

    T and S are detached here: the reference lets this loss reach LTE through T, we do not (the
    texture extractor is then trained by the reconstruction path only), see docs/TRAINING.md.
    """
    if kind not in ("l1", "l2"):
        raise ValueError(f"tpl_loss: must be 'l1' or 'l2' (got {kind!r})")
    dist = F.mse_loss if kind == "l2" else F.l1_loss
    if S is not None:
        S = S.detach()
        weights = (
            torch.sigmoid(F.interpolate(S, scale_factor=4, mode="bicubic")),
            torch.sigmoid(F.interpolate(S, scale_factor=2, mode="bicubic")),
            torch.sigmoid(S),
        )
    else:
        weights = (None, None, None)
    total = sr_features[0].new_zeros(())
    for f, t, w in zip(sr_features, textures, weights, strict=True):
        t = t.detach()
        if w is not None:
            f, t = f * w, t * w
        total = total + dist(f, t)
    return total / 3.0


def discriminator_wgan_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """WGAN critic loss: push D(real) up and D(fake) down. (N, 1) x2 -> scalar."""
    return d_fake.mean() - d_real.mean()


def gradient_penalty(
    discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """WGAN-GP penalty E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates (unweighted).

    real, fake: (N, 3, H, W); fake must already be detached from the generator. -> scalar.
    The interpolation weights come from the global RNG on real's device (saved in checkpoints).
    """
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (eps * real + (1.0 - eps) * fake).requires_grad_(True)
    d_hat = discriminator(x_hat)
    (grad,) = torch.autograd.grad(d_hat.sum(), x_hat, create_graph=True)
    norm = grad.float().flatten(1).norm(2, dim=1)
    return (norm - 1.0).pow(2).mean()


def generator_adversarial_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """The generator's WGAN term -D(SR).mean(). (N, 1) -> scalar."""
    return -d_fake.mean()


class PerceptualDistance(nn.Module):
    """An LPIPS-like distance without learned weights (lower is better).

    Mean over VGG19 relu1_2, relu2_2, relu3_4, relu4_4, relu5_4 of the spatially averaged squared
    difference of channel-unit-normalised features, uniform layer and channel weights. LPIPS
    proper adds learned per-channel weights that must be downloaded; this proxy needs only the
    VGG19 weights (and is meaningless with random VGG weights: check ``vgg_pretrained``).
    """

    def __init__(self, *, features: nn.Sequential) -> None:
        super().__init__()
        self.normalize = _ImageNetInput()
        self.vgg = _frozen(features[: DISTANCE_LAYERS[-1] + 1])

    def train(self, mode: bool = True) -> PerceptualDistance:
        super().train(mode)
        self.vgg.eval()
        return self

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        h = self.normalize(x)
        for i, layer in enumerate(self.vgg):
            h = layer(h)
            if i in DISTANCE_LAYERS:
                out.append(h.float())
        return out

    @torch.no_grad()
    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """sr, hr: (N, 3, H, W) in [-1, 1] -> (N,) distances."""
        total = sr.new_zeros(sr.shape[0], dtype=torch.float32)
        taps_sr, taps_hr = self._taps(sr), self._taps(hr)
        for a, b in zip(taps_sr, taps_hr, strict=True):
            a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
            b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
            total += (a - b).pow(2).sum(dim=1).mean(dim=(1, 2))
        return total / len(DISTANCE_LAYERS)
