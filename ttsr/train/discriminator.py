"""The WGAN-GP critic of the reference TTSR, sized to the training crop as the reference sizes it.

The reference builds its FC (after ten 3x3 convs, every second one stride 2) for the crop it
trains on (`Discriminator(train_crop_size * 4)`), so the critic has 17,821,473 parameters at
160 px and 6,811,425 at 64 px, and it accepts only images of that size.

The crop must be a multiple of 32. The reference computes the FC's width as
`in_size//32 * in_size//32 * 512`, which Python reads left to right as
`((in_size // 32) * in_size) // 32 * 512`; for a multiple of 32 that is (in_size / 32)^2 * 512,
but for any other size it is smaller than the conv stack's output (five stride-2 convs with
padding 1 leave ceil(in_size / 32) per side: 48 px gives 512 inputs for 2x2x512 = 2048 features),
so the reference fails at its first forward. Here that is a ValueError at construction instead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

WIDTHS = (32, 64, 128, 256, 512)
STRIDE = 2 ** len(WIDTHS)  # the conv stack shrinks each side by this factor (32)
REFERENCE_CROP = 160  # the reference's training crop (40-px LR x 4)


class Discriminator(nn.Module):
    """(N, in_channels, crop_size, crop_size) images in [-1, 1] -> (N, 1) critic scores.

    crop_size: the side of the square training crop (the HR size), a positive multiple of 32.
    No sigmoid (WGAN critic). `config()` gives the constructor arguments, to store with the
    weights: the FC's shape depends on crop_size.
    """

    def __init__(self, *, in_channels: int = 3, crop_size: int = REFERENCE_CROP) -> None:
        super().__init__()
        if crop_size <= 0 or crop_size % STRIDE:
            raise ValueError(
                f"crop_size must be a positive multiple of {STRIDE}: the critic's FC is sized to "
                f"(crop_size / {STRIDE})^2 positions, as in the reference (got {crop_size})"
            )
        self.in_channels = in_channels
        self.crop_size = crop_size
        layers: list[nn.Module] = []
        c_in = in_channels
        for width in WIDTHS:
            # One conv keeps the resolution, the next halves it.
            layers += [nn.Conv2d(c_in, width, 3, 1, 1), nn.LeakyReLU(0.2)]
            layers += [nn.Conv2d(width, width, 3, 2, 1), nn.LeakyReLU(0.2)]
            c_in = width
        self.body = nn.Sequential(*layers)
        side = crop_size // STRIDE
        self.head = nn.Sequential(
            nn.Linear(c_in * side * side, 1024),
            nn.LeakyReLU(0.2),
            nn.Linear(1024, 1),
        )

    def config(self) -> dict[str, Any]:
        """The constructor's arguments: `Discriminator(**d.config())` rebuilds the same shape."""
        return {"in_channels": self.in_channels, "crop_size": self.crop_size}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels, self.crop_size, self.crop_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"the critic was built for (N, {', '.join(map(str, expected))}) images "
                f"(crop_size={self.crop_size}), got {tuple(x.shape)}"
            )
        h = self.body(x)  # (N, 512, crop/32, crop/32)
        return self.head(h.flatten(1))
