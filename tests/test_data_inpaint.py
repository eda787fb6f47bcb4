"""Inpainting: box placement, the blur, what LR / HR / Ref are, random boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from ttsr.config import TrainConfig
from ttsr.data import InpaintOptions, inpaint_options, open_dataset, prepare
from ttsr.data.items import blur_box, box_mask, box_pixels, to_tensor

SIZE = 64


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("inpaint")
    rng = np.random.default_rng(0)
    for i in range(16):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((SIZE, SIZE), Image.BICUBIC).save(root / f"{i:02d}.png")
    prepare(root, root / "out", sizes=[SIZE], workers=0, progress=False)
    return str(root / "out")


def test_default_box_and_mask():
    box = box_pixels(InpaintOptions(), 100, None)
    assert box == (50, 50, 80, 80)
    mask = box_mask(100, box)
    assert mask.sum() == 900 and mask[50, 50] == 1 and mask[79, 79] == 1
    assert mask[49, 60] == 0 and mask[80, 60] == 0 and mask[60, 80] == 0
    with pytest.raises(ValueError):
        InpaintOptions(box=(0.5, 0.5, 0.4, 0.8))


@pytest.mark.parametrize("box", [(30, 30, 50, 50), (0, 40, 20, 64), (50, 0, 64, 10)])
def test_local_blur_equals_whole_image_blur(box):
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    ours = np.asarray(blur_box(img, box, 5.0)).astype(int)
    whole = np.asarray(img.filter(ImageFilter.GaussianBlur(5.0))).astype(int)
    l, t, r, b = box
    assert np.abs(ours[t:b, l:r] - whole[t:b, l:r]).max() <= 1
    outside = np.ones((64, 64), bool)
    outside[t:b, l:r] = False
    assert np.array_equal(ours[outside], np.asarray(img).astype(int)[outside])


def test_items_lr_from_degraded_reference(prepared):
    opts = InpaintOptions()
    ds = open_dataset(prepared, size=SIZE, split="train", inpaint=opts, augment=False)
    item = ds[2]
    clean = ds.image(2)
    l, t, r, b = box_pixels(opts, SIZE, None)
    degraded = blur_box(clean, (l, t, r, b), 5.0)
    assert torch.equal(item["HR"], to_tensor(np.asarray(clean)))  # the target is clean
    assert torch.equal(item["Ref"], to_tensor(np.asarray(degraded)))  # ref = input's source
    lr = degraded.resize((SIZE // 4, SIZE // 4), Image.BICUBIC)
    assert torch.equal(item["LR"], to_tensor(np.asarray(lr)))
    assert torch.equal(item["LR_up"], to_tensor(np.asarray(lr.resize((SIZE, SIZE), Image.BICUBIC))))
    assert torch.equal(item["Ref_downup"], item["LR_up"])
    assert item["mask"].shape == (1, SIZE, SIZE)
    assert item["mask"][0, t:b, l:r].min() == 1 and item["mask"].sum() == (r - l) * (b - t)
    differs = (item["HR"] != item["Ref"]).any(0)
    assert differs[t:b, l:r].float().mean() > 0.5 and not differs[item["mask"][0] == 0].any()
    clean_lr = to_tensor(np.asarray(clean.resize((SIZE // 4, SIZE // 4), Image.BICUBIC)))
    assert not torch.equal(item["LR"], clean_lr)


def test_other_reference_stays_clean(prepared):
    ds = open_dataset(
        prepared,
        size=SIZE,
        split="train",
        ref_mode="other",
        inpaint=InpaintOptions(),
        augment=False,
    )
    item = ds[0]
    assert torch.equal(item["Ref"], to_tensor(np.asarray(ds.image(ds._partner[0]))))
    assert not torch.equal(item["HR"], to_tensor(np.asarray(ds.image(0))).neg())  # sanity
    assert (item["HR"] != item["Ref"]).any()


def test_random_boxes(prepared):
    opts = InpaintOptions(random=True)
    test = open_dataset(prepared, size=SIZE, split="test", inpaint=opts)
    masks = [test[i]["mask"] for i in range(len(test))]
    test.set_epoch(7)
    assert all(torch.equal(test[i]["mask"], m) for i, m in enumerate(masks))  # fixed on test
    side = round(0.3 * SIZE)
    assert all(m.sum() == side * side for m in masks)
    train = open_dataset(prepared, size=SIZE, split="train", inpaint=opts, augment=False)
    boxes = {tuple(train[i]["mask"].nonzero()[0].tolist()) for i in range(len(train))}
    assert len(boxes) > 1
    first = train[0]["mask"]
    train.set_epoch(1)
    assert not torch.equal(train[0]["mask"], first)
    aug = open_dataset(prepared, size=SIZE, split="train", inpaint=InpaintOptions())
    for i in range(4):  # the mask turns with HR: HR and Ref agree outside it only when aligned
        assert aug[i]["mask"].sum() == side * side


def test_options_from_config():
    config = TrainConfig(
        inpaint=True, inpaint_box=(0.1, 0.2, 0.3, 0.4), inpaint_blur=2.0, inpaint_random=True
    )
    assert inpaint_options(config) == InpaintOptions(
        box=(0.1, 0.2, 0.3, 0.4), blur=2.0, random=True
    )
    assert inpaint_options(TrainConfig()) is None
