"""`open_dataset`: the one entry point from "what the config says" to a torch Dataset, and the
built-in sample set it opens when no data is configured (docs/DATA.md): crops of scikit-image's
photographs, so training, tests and studies run anywhere without a download. The sample set is
prepared through `prepare` one size at a time on first use into ``$TTSR_CACHE_DIR``; an fcntl
lock serialises parallel builders and everything lands by atomic rename. Its crops are under
512 px, so larger sizes are bicubic-upscaled: fine for testing the machinery, not for judging
image quality.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ttsr.atomic import write_dir_atomically
from ttsr.config import REF_MODES
from ttsr.data.dataset import PairedDataset, ShardDataset, is_paired_dir
from ttsr.data.items import InpaintOptions
from ttsr.data.manifest import MANIFEST_NAME
from ttsr.data.prepare import folder_lock, prepare
from ttsr.errors import DataError

if TYPE_CHECKING:
    from ttsr.config import TrainConfig

SAMPLE_VERSION = 1
# Photographs only (no synthetic images); `cat` is `chelsea`, the lfw faces are 25 px.
PHOTOS = tuple(
    "astronaut brick camera cell chelsea clock coffee coins grass gravel hubble_deep_field "
    "immunohistochemistry moon retina rocket stereo_motorcycle".split()
)
MAX_CROP = 512  # larger crops are downscaled: keeps the first build to a few seconds
# (fraction of the short side, horizontal, vertical position): whole, four 70 % corners, centre
CROPS = ((1.0, 0.5, 0.5), *((0.7, x, y) for y in (0.0, 1.0) for x in (0.0, 1.0)), (0.5, 0.5, 0.5))


def _photo(name: str) -> np.ndarray:
    import skimage.data  # heavy import, only when the sample set is first built

    if name == "stereo_motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


def write_sample_crops(dest: Path) -> int:
    """Write every crop of every photo as ``dest/NAME_K.png``; returns the number written."""
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    for name in PHOTOS:
        img = Image.fromarray(_photo(name))
        w, h = img.size
        for k, (frac, fx, fy) in enumerate(CROPS):
            side = int(min(w, h) * frac)
            left, top = round((w - side) * fx), round((h - side) * fy)
            crop = img.crop((left, top, left + side, top + side))
            if side > MAX_CROP:
                crop = crop.resize((MAX_CROP, MAX_CROP), Image.Resampling.LANCZOS)
            crop.save(dest / f"{name}_{k}.png", compress_level=1)
            count += 1
    return count


def sample_dataset_dir(size: int, *, root: Path | None = None) -> Path:
    """The prepared sample folder, with ``size`` prepared (built on first use)."""
    root = root or Path(os.environ.get("TTSR_CACHE_DIR") or Path.home() / ".cache" / "ttsr-tune")
    base = root / f"sample-v{SAMPLE_VERSION}"
    prepared, crops = base / "prepared", base / "crops"
    if _has_size(prepared, size):  # fast path: the manifest is only ever replaced atomically
        return prepared
    base.mkdir(parents=True, exist_ok=True)
    with folder_lock(base / ".build.lock"):
        if _has_size(prepared, size):  # another process built it while we waited
            return prepared
        if not crops.is_dir():
            write_dir_atomically(crops, write_sample_crops)
        prepare(crops, prepared, sizes=[size], workers=0, allow_upscale=True, progress=False)
    return prepared


def _has_size(prepared: Path, size: int) -> bool:
    try:
        manifest = json.loads((prepared / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    return str(size) in manifest.get("sizes", {})


def write_photo_variants(dest: Path, count: int, *, side: int = 512, seed: int = 0) -> int:
    """``count`` distinct ``side`` px images from the sample photos (for sizing and benchmarks).

    Random square crops (at least 3/4 of the short side), flips and quarter turns of every
    photo, resized to ``side`` with LANCZOS. Real photographic content, so PNG sizes and decode
    times are representative; many crops overlap, so it is no training set.
    """
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(_photo(name)).convert("RGB") for name in PHOTOS]
    for i in range(count):
        img = photos[i % len(photos)]
        w, h = img.size
        crop = int(rng.uniform(0.75, 1.0) * min(w, h))
        left, top = int(rng.integers(0, w - crop + 1)), int(rng.integers(0, h - crop + 1))
        out = img.crop((left, top, left + crop, top + crop))
        out = out.resize((side, side), Image.Resampling.LANCZOS)
        if rng.integers(0, 2):
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out = out.rotate(90 * int(rng.integers(0, 4)))
        out.save(dest / f"photo_{i:05d}.png", compress_level=1)
    return count


def open_dataset(
    data: str | Path | None,
    *,
    size: int,
    split: str,
    ref_mode: str = "gt",
    fraction: float = 1.0,
    inpaint: InpaintOptions | None = None,
    seed: int = 0,
    augment: bool | None = None,
    data_seed: int | None = None,
) -> Dataset:
    """A Dataset of item dicts (see `ttsr.data.items`) for ``split`` ("train" or "test").

    ``data``: None -> the built-in sample set; a prepared folder (has manifest.json) -> shards;
    a paired folder (CUFED layout) -> pairs, which needs ``ref_mode='paired'``.
    ``augment``: None -> on for the training split only. ``seed`` drives augmentation;
    ``data_seed`` (default: ``seed``) the fraction subset and the 'other' pairing, so runs
    repeated over seeds see the same images (the split itself was fixed by ``prepare``).
    """
    if size <= 0 or size % 4:
        raise DataError(f"size: must be a positive multiple of 4 (got {size})")
    if ref_mode not in REF_MODES:
        raise DataError(f"ref_mode: must be one of {', '.join(REF_MODES)} (got {ref_mode!r})")
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"fraction: must be in (0, 1] (got {fraction})")
    common = dict(
        size=size,
        split=split,
        fraction=fraction,
        inpaint=inpaint,
        seed=seed,
        augment=augment,
        data_seed=data_seed,
    )
    if data is None:
        if ref_mode == "paired":
            raise DataError("ref_mode: 'paired' needs data= a paired folder (train/input, ...)")
        return ShardDataset(sample_dataset_dir(size), ref_mode=ref_mode, **common)
    root = Path(data).expanduser()
    if not root.exists():
        raise DataError(f"data: {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data: {root} is not a folder")
    if (root / MANIFEST_NAME).is_file():
        return ShardDataset(root, ref_mode=ref_mode, **common)
    if is_paired_dir(root):
        if ref_mode != "paired":
            raise DataError(
                f"ref_mode: {root} is a paired folder (train/input + train/ref or "
                f"test/CUFED5); use ref_mode 'paired', not {ref_mode!r}"
            )
        return PairedDataset(root, **common)
    if not any(root.iterdir()):
        raise DataError(f"data: {root} is empty")
    raise DataError(
        f"data: {root} is neither a prepared folder (no {MANIFEST_NAME}) nor a paired folder "
        f"(train/input + train/ref, or test/CUFED5); prepare it with "
        f"`python -m ttsr.data prepare --src {root} --out DIR`"
    )


def inpaint_options(config: TrainConfig) -> InpaintOptions | None:
    if not config.inpaint:
        return None
    return InpaintOptions(
        box=tuple(config.inpaint_box), blur=config.inpaint_blur, random=config.inpaint_random
    )


def open_dataset_from_config(
    config: TrainConfig, split: str, *, ref_mode: str | None = None
) -> Dataset:
    """`open_dataset` with the data fields of a `TrainConfig` (augmentation: train only, and
    only when ``config.augment``); ``ref_mode`` replaces the config's (a validation mode).

    ``fraction`` subsets the training split only: every run validates on the same test images
    whatever share of the training data it uses, so a dataset-fraction study compares like
    with like."""
    return open_dataset(
        config.data,
        size=config.size,
        split=split,
        ref_mode=ref_mode or config.ref_mode,
        fraction=config.fraction if split == "train" else 1.0,
        inpaint=inpaint_options(config),
        seed=config.seed,
        augment=config.augment and split == "train",
        data_seed=config.data_seed,
    )
