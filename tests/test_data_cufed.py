"""The paired (CUFED) layout reader on a tiny synthetic tree."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ttsr.data import DataError, PairedDataset, open_dataset
from ttsr.data.items import to_tensor


def colour(seed: int, w: int = 40, h: int = 40) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize(
        (w, h), Image.BICUBIC
    )


@pytest.fixture
def cufed(tmp_path):
    for split_dir in ("train/input", "train/ref", "test/CUFED5"):
        (tmp_path / split_dir).mkdir(parents=True)
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        colour(i).save(tmp_path / "train/input" / name)
        colour(100 + i).save(tmp_path / "train/ref" / name)
    for n in range(2):
        for level in range(6):
            colour(1000 + 10 * n + level, 60, 44).save(
                tmp_path / f"test/CUFED5/{n:03d}_{level}.png"
            )
    return tmp_path


def square(img: Image.Image, size: int) -> torch.Tensor:
    w, h = img.size
    s = min(w, h)
    crop = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if s != size:
        crop = crop.resize((size, size), Image.LANCZOS if s > size else Image.BICUBIC)
    return to_tensor(np.asarray(crop))


def test_train_pairs(cufed):
    ds = open_dataset(str(cufed), size=40, split="train", ref_mode="paired", augment=False)
    assert isinstance(ds, PairedDataset) and len(ds) == 3
    item = ds[1]
    assert torch.equal(item["HR"], square(colour(1), 40))
    assert torch.equal(item["Ref"], square(colour(101), 40))
    assert item["LR"].shape == (3, 10, 10)
    resized = open_dataset(str(cufed), size=32, split="train", ref_mode="paired", augment=False)
    assert torch.equal(resized[0]["HR"], square(colour(0), 32))
    augmented = open_dataset(str(cufed), size=40, split="train", ref_mode="paired")
    assert augmented.augment


def test_cufed5_levels(cufed):
    ds = open_dataset(str(cufed), size=40, split="test", ref_mode="paired")
    assert len(ds) == 2
    assert torch.equal(ds[1]["HR"], square(colour(1010, 60, 44), 40))
    assert torch.equal(ds[1]["Ref"], square(colour(1011, 60, 44), 40))  # level 1 by default
    level3 = PairedDataset(cufed, size=40, split="test", ref_level=3)
    assert torch.equal(level3[0]["Ref"], square(colour(1003, 60, 44), 40))


def test_paired_errors(cufed, tmp_path):
    with pytest.raises(DataError, match="paired"):
        open_dataset(str(cufed), size=40, split="train", ref_mode="gt")
    (cufed / "train/ref/b.png").unlink()
    with pytest.raises(DataError, match="b.png"):
        open_dataset(str(cufed), size=40, split="train", ref_mode="paired")
    only_test = tmp_path / "only_test"
    (only_test / "test/CUFED5").mkdir(parents=True)
    with pytest.raises(DataError, match="train/input"):
        open_dataset(str(only_test), size=40, split="train", ref_mode="paired")
    with pytest.raises(DataError, match="0 pairs"):
        open_dataset(str(only_test), size=40, split="test", ref_mode="paired")
