"""`ShardDataset`: a torch Dataset over a prepared folder (one size, one split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ttsr.data.images import decode_png
from ttsr.data.inpaint import InpaintOptions
from ttsr.data.items import ItemBuilder
from ttsr.data.manifest import SPLITS, available_sizes, read_manifest, size_dir, take_fraction
from ttsr.data.references import NON_PAIRED_MODES, other_partner
from ttsr.data.shards import ShardReader, unusable_shard
from ttsr.errors import DataError


class ShardDataset(Dataset):
    """Items of one split of a prepared folder at one size (see `ttsr.data.items`).

    Images are decoded in ``__getitem__``; shard files are opened lazily in each DataLoader
    worker. Random draws depend only on (seed, epoch, index): call ``set_epoch`` before each
    epoch and a resumed run sees exactly the same augmentations. (Workers get a copy of the
    dataset when an iterator starts, so ``set_epoch`` reaches them with the default
    non-persistent workers; with ``persistent_workers=True`` it would not.)
    """

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
        if split not in SPLITS:
            raise DataError(f"split: must be one of {', '.join(SPLITS)} (got {split!r})")
        if ref_mode not in NON_PAIRED_MODES:
            raise DataError(
                f"ref_mode: {ref_mode!r} needs a paired folder (train/input + train/ref); "
                f"{root} is a prepared folder, use one of {', '.join(NON_PAIRED_MODES)}"
            )
        manifest = read_manifest(root)
        sizes = available_sizes(manifest)
        if size not in sizes:
            raise DataError(
                f"size: {root} has no size {size}; available: {', '.join(map(str, sizes))} "
                f"(prepare it with --sizes {size})"
            )
        self.root, self.size, self.split, self.ref_mode = root, size, split, ref_mode
        self.format = manifest["format"]
        files = sorted(size_dir(root, size).glob(f"{split}-*.parquet"))
        self._reader = ShardReader(files)
        hashes = self._reader.column("sha256")
        locations = [(f, r) for f, n in enumerate(self._reader.num_rows) for r in range(n)]
        # Same rule as the manifest: the first copy (sorted path order) of identical content wins.
        seen: set[str] = set()
        unique = []
        for i, h in enumerate(hashes):
            if h not in seen:
                seen.add(h)
                unique.append(i)
        keys = [hashes[i] for i in unique]
        # which items: data_seed (default: seed); their random draws: seed
        data_seed = seed if data_seed is None else data_seed
        keep = take_fraction(keys, fraction, seed=data_seed) if keys else []
        if not keep:
            raise DataError(f"split: {split!r} of {root} has 0 items at size {size}")
        self.keys = [keys[i] for i in keep]
        self._locations = np.array([locations[unique[i]] for i in keep], dtype=np.int64)
        if ref_mode == "other" and len(self.keys) < 2:
            raise DataError(f"ref_mode: 'other' needs >= 2 items; {split!r} of {root} has 1")
        self._partner = other_partner(self.keys, seed=data_seed) if ref_mode == "other" else None
        self.augment = split == "train" if augment is None else augment
        self._build = ItemBuilder(
            size=size,
            train=split == "train",
            augment=self.augment,
            seed=seed,
            jitter_ref=ref_mode == "gt-augmented",
            inpaint=inpaint,
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of ``epoch`` (training split only; test items are fixed)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.keys)

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
            img = decode_png(data)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise self._bad_image(file, row, f"{type(exc).__name__}: {exc}") from None
        if img.size != shape or img.mode != "RGB":
            raise self._bad_image(file, row, f"a {img.mode} {img.size} image, not RGB {shape}")
        return img

    def _bad_image(self, file: int, row: int, problem: str) -> DataError:
        path = self._reader.paths[file]
        return unusable_shard(path, f"row {row} is not a valid {self.format} image: {problem}")

    def __getitem__(self, index: int) -> dict:
        return self.item(index, self.epoch)

    def item(self, index: int, epoch: int) -> dict:
        """Item ``index`` with the random draws of ``epoch`` (a function of its arguments)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        ref = self.image(self._partner[index]) if self._partner is not None else None
        return self._build(index, epoch, self.image(index), ref)
