"""The WGAN-GP critic of the reference TTSR, made resolution-independent.

Ten 3x3 convolutions (32, 32/s2, 64, 64/s2, 128, 128/s2, 256, 256/s2, 512, 512/s2), each followed
by LeakyReLU(0.2), then FC(512*5*5 -> 1024) -> LeakyReLU(0.2) -> FC(1024 -> 1). The reference's
FC only fits 160-px inputs (160 / 32 = 5); an adaptive average pool to 5x5 in front of it is the
identity at 160 px and lets the same weights (17,821,473 parameters) run at any size.
"""

from __future__ import annotations

import torch
from torch import nn

WIDTHS = (32, 64, 128, 256, 512)
POOL = 5  # the reference's spatial size in front of the FC at 160 px


class Discriminator(nn.Module):
    """(N, in_channels, H, W) images in [-1, 1] -> (N, 1) critic scores (no sigmoid)."""

    def __init__(self, *, in_channels: int = 3, pool: int = POOL) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for width in WIDTHS:
            # One conv keeps the resolution, the next halves it.
            layers += [nn.Conv2d(c_in, width, 3, 1, 1), nn.LeakyReLU(0.2)]
            layers += [nn.Conv2d(width, width, 3, 2, 1), nn.LeakyReLU(0.2)]
            c_in = width
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.head = nn.Sequential(
            nn.Linear(c_in * pool * pool, 1024),
            nn.LeakyReLU(0.2),
            nn.Linear(1024, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.body(x))  # (N, 512, 5, 5)
        return self.head(h.flatten(1))
