"""The reference's training augmentation: random flips and 90-degree rotations of a group.

TTSR draws one transform for the (LR, LR_up, HR) group and an independent one for the
(Ref, Ref_downup) group, so the network cannot rely on the reference being aligned with the
input. Arrays are HWC (or HW) numpy; every array of a group gets the same transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FlipRotate:
    hflip: bool
    vflip: bool
    rot90: int  # counter-clockwise quarter turns, 0..3

    @classmethod
    def draw(cls, rng: np.random.Generator) -> FlipRotate:
        h, v, k = rng.integers(0, 2), rng.integers(0, 2), rng.integers(0, 4)
        return cls(bool(h), bool(v), int(k))

    def apply(self, arr: np.ndarray) -> np.ndarray:
        """(H, W, ...) -> same transform as the reference's fliplr / flipud / rot90 order."""
        if self.hflip:
            arr = arr[:, ::-1]
        if self.vflip:
            arr = arr[::-1]
        if self.rot90:
            arr = np.rot90(arr, self.rot90)
        return arr


IDENTITY = FlipRotate(False, False, 0)


def item_rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
    """A generator that depends only on (seed, epoch, index, stream): resumable, worker-safe.

    ``stream`` separates independent draws for the same item (groups, reference, inpaint box).
    """
    return np.random.default_rng([seed & 0xFFFFFFFF, epoch, index, stream])
