"""From an HR image and (optionally) a reference image to the dict the model trains on.

Shared by the shard and the paired datasets so every source produces identical items:

    LR         (3, S/4, S/4)  PIL bicubic /4 of the input's source image
    LR_up      (3, S, S)      PIL bicubic x4 of LR
    HR         (3, S, S)      the clean image (the target)
    Ref        (3, S, S)      the reference (see `ttsr.data.references`)
    Ref_downup (3, S, S)      PIL bicubic /4 then x4 of Ref
    mask       (1, S, S)      inpainting only: 1 inside the degraded box
    index      int

The images are uint8 (the pixels PIL's resizes produce, exactly); `to_model_range` turns them
into the reference's float32 [-1, 1] (x / 127.5 - 1) where they are used — on the GPU, in
`Trainer.prepare` — so a loader worker skips the float pass (its main per-item cost after the
resizes) and a batch crosses the host and the PCIe link at a quarter of the bytes. The mask is
float32 {0, 1}. The input's source is HR, or in inpainting HR with a box blurred.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ttsr.data.augment import IDENTITY, FlipRotate, item_rng
from ttsr.data.images import bicubic
from ttsr.data.inpaint import InpaintOptions, blur_box, box_mask, box_pixels
from ttsr.data.references import jitter_reference

# independent random streams per item (see augment.item_rng)
_STREAM_INPUT_AUG, _STREAM_REF_AUG, _STREAM_BOX, _STREAM_REF_JITTER = range(4)


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """(H, W, C) or (H, W) uint8 -> (C, H, W) uint8, contiguous."""
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
        s, epoch = self.size, epoch if self.train else 0
        out: dict[str, torch.Tensor | int] = {}
        degraded, mask = source, None
        if self.inpaint is not None:
            box_rng = item_rng(self.seed, epoch, index, _STREAM_BOX)
            box = box_pixels(self.inpaint, s, box_rng)
            degraded = blur_box(source, box, self.inpaint.blur)
            mask = box_mask(s, box)
        lr = bicubic(degraded, s // 4)
        lr_up = bicubic(lr, s)
        if ref is None:
            ref = degraded
            if self.jitter_ref:
                rng = item_rng(self.seed, epoch, index, _STREAM_REF_JITTER)
                ref = Image.fromarray(jitter_reference(np.asarray(ref), rng))
        # ref is the input's own source: its down-up copy is LR_up, no need to resize twice
        ref_downup = lr_up if ref is degraded else bicubic(bicubic(ref, s // 4), s)

        input_aug = ref_aug = IDENTITY
        if self.augment:
            input_aug = FlipRotate.draw(item_rng(self.seed, epoch, index, _STREAM_INPUT_AUG))
            ref_aug = FlipRotate.draw(item_rng(self.seed, epoch, index, _STREAM_REF_AUG))
        out["LR"] = to_tensor(input_aug.apply(np.asarray(lr)))
        out["LR_up"] = to_tensor(input_aug.apply(np.asarray(lr_up)))
        out["HR"] = to_tensor(input_aug.apply(np.asarray(source)))
        out["Ref"] = to_tensor(ref_aug.apply(np.asarray(ref)))
        out["Ref_downup"] = to_tensor(ref_aug.apply(np.asarray(ref_downup)))
        if mask is not None:
            # the mask is a 0/1 map, not an image: keep it in {0, 1}
            out["mask"] = torch.from_numpy(np.ascontiguousarray(input_aug.apply(mask)))[None]
        out["index"] = index
        return out
