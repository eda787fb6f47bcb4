"""The built-in sample set: real photographs shipped with scikit-image, cut into square crops.

Used when no dataset is configured, so training, tests and Tune studies run anywhere without a
download. The crops are written once as PNG files and prepared through the same `prepare` path
as a real dataset, one size at a time on first use, into ``$TTSR_CACHE_DIR`` (default
``~/.cache/ttsr-tune``). Several processes (parallel trials) may ask at once: an fcntl lock
serialises the build and everything lands under its final name by atomic rename.

The crops are smaller than 512 px (the photos are 300-1411 px), so sizes above a crop's side
are bicubic-upscaled rather than skipped: fine for smoke tests and studies of the machinery, not
for judging image quality.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ttsr.data.manifest import MANIFEST_NAME
from ttsr.data.prepare import folder_lock, prepare

SAMPLE_VERSION = 1
# Photographs only (no synthetic images); `cat` is `chelsea`, the lfw faces are 25 px.
PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
    "stereo_motorcycle",
)
MAX_CROP = 512  # larger crops are downscaled: keeps the first build to a few seconds
# (fraction of the short side, horizontal position, vertical position) of each crop
CROPS = (
    (1.0, 0.5, 0.5),
    (0.7, 0.0, 0.0),
    (0.7, 1.0, 0.0),
    (0.7, 0.0, 1.0),
    (0.7, 1.0, 1.0),
    (0.5, 0.5, 0.5),
)


def cache_dir() -> Path:
    return Path(os.environ.get("TTSR_CACHE_DIR") or Path.home() / ".cache" / "ttsr-tune")


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
    base = (root or cache_dir()) / f"sample-v{SAMPLE_VERSION}"
    prepared, crops = base / "prepared", base / "crops"
    if _has_size(prepared, size):  # fast path: the manifest is only ever replaced atomically
        return prepared
    base.mkdir(parents=True, exist_ok=True)
    with folder_lock(base / ".build.lock"):
        if _has_size(prepared, size):  # another process built it while we waited
            return prepared
        if not crops.is_dir():
            tmp = Path(tempfile.mkdtemp(prefix=".crops-", dir=base))
            try:
                write_sample_crops(tmp)
                os.replace(tmp, crops)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
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
