"""From an HR image and (optionally) a reference image to the dict the model trains on, the same
for every dataset (docs/DATA.md: "Items", "Reference modes", "Inpainting"):

    LR         (3, S/4, S/4)  PIL bicubic /4 of the input's source image (HR, or inpainted HR)
    LR_up, HR  (3, S, S)      bicubic x4 of LR; the clean image (the target)
    Ref        (3, S, S)      the reference (ref_mode); Ref_downup: its bicubic /4 then x4
    mask       (1, S, S)      inpainting only: float32, 1 inside the degraded box

Images are uint8 (exactly PIL's pixels); `to_model_range` makes them the reference's float32
[-1, 1] on the GPU (`Trainer.prepare`), so a loader worker skips the float pass and a batch
crosses PCIe at a quarter of the bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from PIL import Image, ImageFilter

from ttsr.data.images import bicubic
from ttsr.data.manifest import fraction_order

MAX_SHIFT_FRACTION = 1 / 16  # of the side (gt-augmented)
JITTER = 0.1  # brightness, contrast and saturation factors in [1 - JITTER, 1 + JITTER]
# independent random streams per item (see item_rng)
_STREAM_INPUT_AUG, _STREAM_REF_AUG, _STREAM_BOX, _STREAM_REF_JITTER = range(4)


def item_rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
    """A generator that depends only on (seed, epoch, index, stream): resumable, worker-safe."""
    return np.random.default_rng([seed & 0xFFFFFFFF, epoch, index, stream])


def flip_rotate(rng: np.random.Generator | None) -> Callable[[np.ndarray], np.ndarray]:
    """The reference's augmentation of (H, W, ...) arrays, drawn from ``rng`` (None: identity):
    fliplr, flipud, then counter-clockwise quarter turns. TTSR draws one for the (LR, LR_up, HR)
    group and an independent one for (Ref, Ref_downup), so the network cannot rely on the
    reference being aligned with the input."""
    if rng is None:
        return lambda arr: arr
    hflip, vflip, turns = rng.integers(0, 2), rng.integers(0, 2), int(rng.integers(0, 4))

    def apply(arr: np.ndarray) -> np.ndarray:
        arr = arr[:, ::-1] if hflip else arr
        arr = arr[::-1] if vflip else arr
        return np.rot90(arr, turns) if turns else arr

    return apply


def other_partner(keys: list[str], *, seed: int) -> list[int]:
    """For each item i, the index of its reference: items in a seeded order each take the next
    (a single cycle, so never itself when there are at least two items)."""
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
    out = flip_rotate(rng)(img)
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
    Random boxes keep the configured width and height and move the top-left corner uniformly."""
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
    out.paste(blurred.crop((left - ctx[0], top - ctx[1], right - ctx[0], bottom - ctx[1])), box[:2])
    return out


def box_mask(size: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """(size, size) float32, 1 inside the box."""
    mask = np.zeros((size, size), dtype=np.float32)
    left, top, right, bottom = box
    mask[top:bottom, left:right] = 1.0
    return mask


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """(H, W, C) or (H, W) -> (C, H, W), contiguous, same dtype."""
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [-1, 1], the reference's x / 127.5 - 1 (the same float32
    arithmetic, so the same numbers on any device); a float tensor is returned as it is."""
    if x.dtype != torch.uint8:
        return x
    return x.to(torch.float32).div_(127.5).sub_(1.0)


@dataclass(frozen=True)
class ItemBuilder:
    size: int
    train: bool  # training split: random draws change with the epoch; test: fixed per item
    augment: bool  # the reference's flips/rotations, drawn per group
    seed: int = 0
    jitter_ref: bool = False  # ref_mode gt-augmented
    inpaint: InpaintOptions | None = None

    def __call__(
        self, index: int, epoch: int, source: Image.Image, ref: Image.Image | None
    ) -> dict[str, torch.Tensor | int]:
        """``source``/``ref``: RGB ``size`` x ``size`` images; ``ref=None`` means the input's
        source image (ref_mode gt / gt-augmented)."""
        s = self.size
        rng = partial(item_rng, self.seed, epoch if self.train else 0, index)  # rng(stream)
        degraded, mask = source, None
        if self.inpaint is not None:
            box = box_pixels(self.inpaint, s, rng(_STREAM_BOX))
            degraded = blur_box(source, box, self.inpaint.blur)
            mask = box_mask(s, box)
        lr = bicubic(degraded, s // 4)
        lr_up = bicubic(lr, s)
        if ref is None:
            ref = degraded
            if self.jitter_ref:
                ref = Image.fromarray(jitter_reference(np.asarray(ref), rng(_STREAM_REF_JITTER)))
        # ref is the input's own source: its down-up copy is LR_up, no need to resize twice
        ref_downup = lr_up if ref is degraded else bicubic(bicubic(ref, s // 4), s)

        input_aug = flip_rotate(rng(_STREAM_INPUT_AUG) if self.augment else None)
        ref_aug = flip_rotate(rng(_STREAM_REF_AUG) if self.augment else None)
        out: dict[str, torch.Tensor | int] = {
            "LR": to_tensor(input_aug(np.asarray(lr))),
            "LR_up": to_tensor(input_aug(np.asarray(lr_up))),
            "HR": to_tensor(input_aug(np.asarray(source))),
            "Ref": to_tensor(ref_aug(np.asarray(ref))),
            "Ref_downup": to_tensor(ref_aug(np.asarray(ref_downup))),
        }
        if mask is not None:
            out["mask"] = to_tensor(input_aug(mask))  # a 0/1 map, not an image
        out["index"] = index
        return out
