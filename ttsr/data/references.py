"""Where an item's reference image comes from (``ref_mode``), for the non-paired datasets.

- ``gt``: the reference is the input's source image itself (the target HR; in inpainting, the
  degraded image the input was made from).
- ``gt-augmented``: that image after a random flip/rotation, a small shift and a colour jitter,
  so the reference is close to but not pixel-aligned with the target. Fixed per item on the
  test split; redrawn every epoch on the training split.
- ``other``: a different image of the same split (seeded derangement; fixed across epochs).
- ``paired``: explicit pairs from a folder layout; see `ttsr.data.cufed`.
"""

from __future__ import annotations

import numpy as np

from ttsr.data.augment import FlipRotate
from ttsr.data.manifest import fraction_order

NON_PAIRED_MODES = ("gt", "gt-augmented", "other")

MAX_SHIFT_FRACTION = 1 / 16  # of the side
JITTER = 0.1  # brightness, contrast and saturation factors in [1 - JITTER, 1 + JITTER]


def other_partner(keys: list[str], *, seed: int) -> list[int]:
    """For each item i, the index of its reference: a permutation with no fixed points.

    Items are put in a seeded order and each one takes the next as its reference (a single
    cycle), which never maps an item to itself when there are at least two items.
    """
    n = len(keys)
    if n < 2:
        raise ValueError("ref_mode 'other' needs at least 2 items in the split")
    order = fraction_order(keys, seed=seed + 1)  # +1: not the same order as the fraction cut
    partner = [0] * n
    for pos, i in enumerate(order):
        partner[i] = order[(pos + 1) % n]
    return partner


def jitter_reference(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(S, S, 3) uint8 -> the same image flipped/rotated, shifted and colour-jittered."""
    size = img.shape[0]
    out = FlipRotate.draw(rng).apply(img)
    max_shift = max(1, int(size * MAX_SHIFT_FRACTION))
    dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
    padded = np.pad(out, ((max_shift, max_shift), (max_shift, max_shift), (0, 0)), mode="reflect")
    top, left = max_shift + dy, max_shift + dx
    out = padded[top : top + size, left : left + size].astype(np.float32)
    brightness, contrast, saturation = rng.uniform(1 - JITTER, 1 + JITTER, size=3)
    out *= brightness
    out = (out - out.mean()) * contrast + out.mean()
    gray = out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out = (out - gray[..., None]) * saturation + gray[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
