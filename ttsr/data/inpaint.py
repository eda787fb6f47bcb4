"""Inpainting degradation (seed Exp2-3/2-4): a box of the image is Gaussian-blurred.

The input LR is the /4 downscale of the degraded image, the target HR is the clean image, and
the mask (1 inside the box) lets validation score the box and the rest separately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class InpaintOptions:
    box: tuple[float, float, float, float] = (0.5, 0.5, 0.8, 0.8)  # x0, y0, x1, y1 fractions
    blur: float = 5.0  # Pillow GaussianBlur radius, in pixels at the prepared size
    random: bool = False  # a box of the same width/height at a random place per sample

    def __post_init__(self) -> None:
        x0, y0, x1, y1 = self.box
        if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            raise ValueError(f"inpaint box must satisfy 0 <= x0 < x1 <= 1 and y0 < y1: {self.box}")
        if self.blur < 0:
            raise ValueError(f"inpaint blur must be >= 0: {self.blur}")


def box_pixels(
    options: InpaintOptions, size: int, rng: np.random.Generator | None
) -> tuple[int, int, int, int]:
    """The box in pixels (left, top, right, bottom), half-open, for a ``size`` x ``size`` image.

    Random boxes keep the configured width and height and move the top-left corner uniformly.
    """
    x0, y0, x1, y1 = options.box
    if options.random:
        if rng is None:
            raise ValueError("a random inpaint box needs a generator")
        w, h = max(1, round((x1 - x0) * size)), max(1, round((y1 - y0) * size))
        left, top = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        return left, top, left + w, top + h
    left, top = round(x0 * size), round(y0 * size)
    right, bottom = max(left + 1, round(x1 * size)), max(top + 1, round(y1 * size))
    return left, top, min(right, size), min(bottom, size)


def blur_box(img: Image.Image, box: tuple[int, int, int, int], radius: float) -> Image.Image:
    """Copy of ``img`` with ``box`` replaced by the same region of the Gaussian-blurred image.

    Only the box plus a margin of context is blurred (cheaper than the whole image); the margin
    is wide enough that the result equals blurring the whole image and pasting the box back,
    so there are no seams from the crop edge (tests/test_data_inpaint.py checks this).
    """
    out = img.copy()
    if radius <= 0:
        return out
    margin = math.ceil(3 * radius) + 2
    left, top, right, bottom = box
    ctx = (
        max(0, left - margin),
        max(0, top - margin),
        min(img.width, right + margin),
        min(img.height, bottom + margin),
    )
    blurred = img.crop(ctx).filter(ImageFilter.GaussianBlur(radius))
    inner = (left - ctx[0], top - ctx[1], right - ctx[0], bottom - ctx[1])
    out.paste(blurred.crop(inner), (left, top))
    return out


def box_mask(size: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """(size, size) float32, 1 inside the box."""
    mask = np.zeros((size, size), dtype=np.float32)
    left, top, right, bottom = box
    mask[top:bottom, left:right] = 1.0
    return mask
