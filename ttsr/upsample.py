"""Bicubic upsampling by an integer factor as two depthwise 1-D convolutions (CPU speed-up).

MainNet upsamples feature maps bicubically by 2 and 4 (`F.interpolate(mode="bicubic")`, default
alignment, as the reference). PyTorch's CPU kernel computes each output pixel from 16 inputs
and its backward scatters into the input one output pixel at a time; at 160 px on one core the
forward and backward of MainNet's six feature-map upsamplings took ~280 ms per step (measured),
~3.5 % of a step. `bicubic_by_convolution` computes the same interpolation with convolutions
(oneDNN kernels, forward and backward): ~1.7x faster on this project's 2-core AVX2 CPU
(forward + backward at 40 and 80 px, 64 channels, one thread).

Why it is the same computation. For an integer scale s and ``align_corners=False``, output
position ``o = s·i + r`` samples input coordinate ``(o + 0.5) / s - 0.5 = i + (r + 0.5) / s -
0.5``: every output of phase r (= o mod s) sits at the same fractional offset from its input
pixel i, so it is a fixed 4-tap weighted sum of inputs ``i - 2 .. i + 2`` (one of the five taps
is 0) with the cubic-convolution weights (A = -0.75) of that offset; inputs beyond the border
are clamped to the edge pixel, i.e. replicate padding. PyTorch interpolates along the width
first, then the height, and so does this: a depthwise (1 x 5) convolution with s output channels
per input channel (one per phase), interleaving the phases into the width, then the same along
the height. The weights are dyadic fractions (offsets in 1/8 steps at scale 4), exact in fp32,
so the only difference is the order of the four additions: results agree to fp32 rounding
(tests/test_upsample.py), as do the gradients. fp32/fp64 only (PyTorch interpolates bf16/fp16
in fp32; rounded weights would not be the same computation).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

CUBIC_A = -0.75  # PyTorch's (and OpenCV's) cubic convolution coefficient
TAPS = 5  # inputs i-2 .. i+2 cover the 4 taps of every phase


def _cubic(distance: float) -> float:
    """The cubic convolution kernel W(x) for |x| < 2 (Keys 1981, a = CUBIC_A)."""
    x, a = abs(distance), CUBIC_A
    if x <= 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a


@functools.cache
def phase_weights(scale: int) -> tuple[tuple[float, ...], ...]:
    """(scale, TAPS) weights: row r weighs inputs i-2 .. i+2 for the output s·i + r."""
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    rows = []
    for r in range(scale):
        offset = (r + 0.5) / scale - 0.5  # where output s·i + r sits, relative to input i
        rows.append(
            tuple(
                _cubic(tap - offset) if abs(tap - offset) < 2 else 0.0 for tap in (-2, -1, 0, 1, 2)
            )
        )
    return tuple(rows)


def _weights(scale: int, channels: int, x: Tensor, shape: tuple[int, int]) -> Tensor:
    """The depthwise kernel: per input channel, one output channel per phase."""
    weight = torch.tensor(phase_weights(scale), dtype=x.dtype, device=x.device)
    return weight.repeat(channels, 1).view(channels * scale, 1, *shape)


def bicubic_by_convolution(x: Tensor, scale: int) -> Tensor:
    """``F.interpolate(x, scale_factor=scale, mode="bicubic")`` for an integer ``scale``.

    x: (N, C, H, W) float32 or float64 -> (N, C, H·scale, W·scale), contiguous.
    """
    if x.dim() != 4 or x.dtype not in (torch.float32, torch.float64):
        raise ValueError(
            f"x must be a float32/64 (N, C, H, W) tensor, got {x.dtype} {tuple(x.shape)}"
        )
    n, c, h, w = x.shape
    s = scale
    # along the width: phases as channels, then interleaved into the width
    y = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), _weights(s, c, x, (1, TAPS)), groups=c)
    y = y.view(n, c, s, h, w).permute(0, 1, 3, 4, 2).reshape(n, c, h, w * s)
    # along the height, the same
    y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="replicate"), _weights(s, c, x, (TAPS, 1)), groups=c)
    return y.view(n, c, s, h, w * s).permute(0, 1, 3, 2, 4).reshape(n, c, h * s, w * s)
