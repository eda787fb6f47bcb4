"""The torch Datasets: `ShardDataset` over one size and split of a prepared folder, and
`PairedDataset` over explicit (input, reference) pairs (CUFED's ``train/input`` + ``train/ref``,
``test/CUFED5/NNN_0.png`` + ``NNN_L.png`` with L the similarity level, or ``test/input`` +
``test/ref``), center-cropped and resized to ``size`` (so CUFED5 PSNR is not the paper's
uncropped figure). Both decode in ``__getitem__`` and draw at random only from (seed, epoch,
index): with ``set_epoch`` each epoch a resumed run sees the same augmentations.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ttsr.config import VAL_REF_MODES
from ttsr.data.images import IMAGE_EXTENSIONS, UnusableImage, decode_rgb_square, resize_to
from ttsr.data.items import InpaintOptions, ItemBuilder, other_partner
from ttsr.data.manifest import SPLITS, available_sizes, read_manifest, size_dir, take_fraction
from ttsr.data.shards import ShardReader, unusable_shard
from ttsr.errors import DataError

_CUFED5_INPUT = re.compile(r"^(\d+)_0\.png$")


class _ItemDataset(Dataset):
    """What both datasets share: subclasses set ``keys`` and implement ``_images``."""

    keys: list[str]

    def __init__(
        self, root: Path, size: int, split: str, *, seed: int, augment: bool | None, **build
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"split: must be one of {', '.join(SPLITS)} (got {split!r})")
        self.root, self.size, self.split = root, size, split
        self.augment = split == "train" if augment is None else augment
        self._build = ItemBuilder(
            size=size, train=split == "train", augment=self.augment, seed=seed, **build
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of ``epoch`` (training split only; test items are fixed).
        (DataLoader workers see it only if they are started after it, i.e. not persistent.)"""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> dict:
        return self.item(index, self.epoch)

    def item(self, index: int, epoch: int) -> dict:
        """Item ``index`` with the random draws of ``epoch`` (a function of its arguments)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._build(index, epoch, *self._images(index))

    def _images(self, index: int) -> tuple[Image.Image, Image.Image | None]:
        raise NotImplementedError


class ShardDataset(_ItemDataset):
    """Items of one split of a prepared folder at one size (``ref_mode`` gt, gt-augmented or
    other); shard files are opened lazily in each DataLoader worker."""

    def __init__(
        self,
        root: Path | str,
        *,
        size: int,
        split: str,
        ref_mode: str = "gt",
        fraction: float = 1.0,
        inpaint: InpaintOptions | None = None,
        seed: int = 0,
        augment: bool | None = None,
        data_seed: int | None = None,
    ) -> None:
        root = Path(root)
        jitter_ref = ref_mode == "gt-augmented"
        super().__init__(
            root, size, split, seed=seed, augment=augment, jitter_ref=jitter_ref, inpaint=inpaint
        )
        if ref_mode not in VAL_REF_MODES:
            raise DataError(
                f"ref_mode: {ref_mode!r} needs a paired folder (train/input + train/ref); "
                f"{root} is a prepared folder, use one of {', '.join(VAL_REF_MODES)}"
            )
        manifest = read_manifest(root)
        sizes = available_sizes(manifest)
        if size not in sizes:
            raise DataError(
                f"size: {root} has no size {size}; available: {', '.join(map(str, sizes))} "
                f"(prepare it with --sizes {size})"
            )
        self.ref_mode, self.format = ref_mode, manifest["format"]
        self._reader = ShardReader(sorted(size_dir(root, size).glob(f"{split}-*.parquet")))
        locations = [(f, r) for f, n in enumerate(self._reader.num_rows) for r in range(n)]
        # Same rule as the manifest: the first copy (sorted path order) of identical content wins.
        first: dict[str, int] = {}
        for i, h in enumerate(self._reader.column("sha256")):
            first.setdefault(h, i)
        keys = list(first)
        # which items: data_seed (default: seed); their random draws: seed
        data_seed = seed if data_seed is None else data_seed
        keep = take_fraction(keys, fraction, seed=data_seed)
        if not keep:
            raise DataError(f"split: {split!r} of {root} has 0 items at size {size}")
        self.keys = [keys[i] for i in keep]
        self._locations = np.array([locations[first[keys[i]]] for i in keep], dtype=np.int64)
        if ref_mode == "other" and len(self.keys) < 2:
            raise DataError(f"ref_mode: 'other' needs >= 2 items; {split!r} of {root} has 1")
        self._partner = other_partner(self.keys, seed=data_seed) if ref_mode == "other" else None

    def image(self, index: int) -> Image.Image:
        """The stored ``size`` x ``size`` RGB image of item ``index``."""
        file, row = (int(v) for v in self._locations[index])
        data = self._reader.read_image(file, row)
        shape = (self.size, self.size)
        if self.format == "raw":
            if len(data) != self.size * self.size * 3:
                raise self._bad_image(file, row, f"{len(data)} bytes, not {shape} RGB")
            return Image.frombuffer("RGB", shape, data, "raw", "RGB", 0, 1)
        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise self._bad_image(file, row, f"{type(exc).__name__}: {exc}") from None
        if img.size != shape or img.mode != "RGB":
            raise self._bad_image(file, row, f"a {img.mode} {img.size} image, not RGB {shape}")
        return img

    def _bad_image(self, file: int, row: int, problem: str) -> DataError:
        path = self._reader.paths[file]
        return unusable_shard(path, f"row {row} is not a valid {self.format} image: {problem}")

    def _images(self, index: int) -> tuple[Image.Image, Image.Image | None]:
        ref = self.image(self._partner[index]) if self._partner is not None else None
        return self.image(index), ref


def is_paired_dir(root: Path) -> bool:
    return any((root / sub).is_dir() for sub in ("train/input", "test/input", "test/CUFED5"))


def find_pairs(root: Path, split: str, *, ref_level: int = 1) -> list[tuple[Path, Path]]:
    """(input, reference) paths of ``split`` in file-name order; DataError if incomplete."""
    cufed5 = root / "test" / "CUFED5"
    if split == "test" and cufed5.is_dir():
        pairs = []
        for path in sorted(cufed5.iterdir()):
            if m := _CUFED5_INPUT.match(path.name):
                ref = cufed5 / f"{m.group(1)}_{ref_level}.png"
                if not ref.is_file():
                    raise DataError(f"{ref}: missing (level-{ref_level} reference of {path})")
                pairs.append((path, ref))
        return pairs
    inputs, refs = root / split / "input", root / split / "ref"
    for folder in (inputs, refs):
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder (paired layout needs {split}/{folder.name})")
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


class PairedDataset(_ItemDataset):
    """Items of a paired folder (``ref_mode='paired'``)."""

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
        super().__init__(root, size, split, seed=seed, augment=augment, inpaint=inpaint)
        pairs = find_pairs(root, split, ref_level=ref_level)
        keys = [p.relative_to(root).as_posix() for p, _ in pairs]
        data_seed = seed if data_seed is None else data_seed  # which pairs; seed: their draws
        keep = take_fraction(keys, fraction, seed=data_seed)
        if not keep:
            raise DataError(f"split: {split!r} of {root} has 0 pairs")
        self.pairs = [pairs[i] for i in keep]
        self.keys = [keys[i] for i in keep]

    def _images(self, index: int) -> tuple[Image.Image, Image.Image | None]:
        source, ref = self.pairs[index]
        return load_square(source, self.size), load_square(ref, self.size)
