"""`PairedDataset`: explicit (input, reference) pairs read straight from a folder.

Layouts (CUFED's, as the reference TTSR uses it, and a generic one)::

    DIR/train/input/NAME.png   with   DIR/train/ref/NAME.png       (CUFED train: 160 x 160)
    DIR/test/CUFED5/NNN_0.png  with   DIR/test/CUFED5/NNN_L.png    (L = 1..5, similarity level)
    DIR/test/input/NAME.png    with   DIR/test/ref/NAME.png        (when there is no CUFED5)

Images are decoded, center-cropped to a square and resized to ``size`` in ``__getitem__``
(CUFED5 test images are not square; the reference evaluates them uncropped, so PSNR here is
not the paper's CUFED5 number).
"""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from ttsr.data.images import IMAGE_EXTENSIONS, UnusableImage, decode_rgb_square, resize_to
from ttsr.data.inpaint import InpaintOptions
from ttsr.data.items import ItemBuilder
from ttsr.data.manifest import SPLITS, take_fraction
from ttsr.errors import DataError

_CUFED5_INPUT = re.compile(r"^(\d+)_0\.png$")


def is_paired_dir(root: Path) -> bool:
    return any((root / sub).is_dir() for sub in ("train/input", "test/input", "test/CUFED5"))


def find_pairs(root: Path, split: str, *, ref_level: int = 1) -> list[tuple[Path, Path]]:
    """(input, reference) paths of ``split`` in file-name order; DataError if incomplete."""
    cufed5 = root / "test" / "CUFED5"
    if split == "test" and cufed5.is_dir():
        pairs = []
        for path in sorted(cufed5.iterdir()):
            m = _CUFED5_INPUT.match(path.name)
            if m:
                ref = cufed5 / f"{m.group(1)}_{ref_level}.png"
                if not ref.is_file():
                    raise DataError(f"{ref}: missing (level-{ref_level} reference of {path})")
                pairs.append((path, ref))
        return pairs
    inputs, refs = root / split / "input", root / split / "ref"
    if not inputs.is_dir():
        raise DataError(f"{inputs}: no such folder (paired layout needs {split}/input)")
    if not refs.is_dir():
        raise DataError(f"{refs}: no such folder (paired layout needs {split}/ref)")
    pairs = []
    for path in sorted(inputs.iterdir()):
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            ref = refs / path.name
            if not ref.is_file():
                raise DataError(f"{ref}: missing (reference of {path})")
            pairs.append((path, ref))
    return pairs


def load_square(path: Path, size: int) -> Image.Image:
    try:
        img, _ = decode_rgb_square(path.read_bytes())
    except (OSError, UnusableImage) as exc:
        raise DataError(f"{path}: {exc}") from None
    return resize_to(img, size)


class PairedDataset(Dataset):
    """Items of a paired folder (``ref_mode='paired'``); same item dict as `ShardDataset`."""

    def __init__(
        self,
        root: Path | str,
        *,
        size: int,
        split: str,
        fraction: float = 1.0,
        inpaint: InpaintOptions | None = None,
        seed: int = 0,
        augment: bool | None = None,
        ref_level: int = 1,
        data_seed: int | None = None,
    ) -> None:
        root = Path(root)
        if split not in SPLITS:
            raise DataError(f"split: must be one of {', '.join(SPLITS)} (got {split!r})")
        pairs = find_pairs(root, split, ref_level=ref_level)
        keys = [p.relative_to(root).as_posix() for p, _ in pairs]
        data_seed = seed if data_seed is None else data_seed  # which pairs; seed: their draws
        keep = take_fraction(keys, fraction, seed=data_seed) if keys else []
        if not keep:
            raise DataError(f"split: {split!r} of {root} has 0 pairs")
        self.root, self.size, self.split = root, size, split
        self.pairs = [pairs[i] for i in keep]
        self.keys = [keys[i] for i in keep]
        self.augment = split == "train" if augment is None else augment
        self._build = ItemBuilder(
            size=size, train=split == "train", augment=self.augment, seed=seed, inpaint=inpaint
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        return self.item(index, self.epoch)

    def item(self, index: int, epoch: int) -> dict:
        """Item ``index`` with the random draws of ``epoch`` (a function of its arguments)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        source, ref = self.pairs[index]
        return self._build(
            index, epoch, load_square(source, self.size), load_square(ref, self.size)
        )
