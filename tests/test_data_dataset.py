"""ShardDataset: item contents, augmentation, determinism, fractions, reference modes, errors."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ttsr.config import TrainConfig
from ttsr.data import DataError, ShardDataset, open_dataset, open_dataset_from_config, prepare
from ttsr.data.items import to_model_range, to_tensor

SIZE = 32


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for i in range(40):
        small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((64, 64), Image.Resampling.BICUBIC)
        img.save(root / f"img_{i:03d}.png")
    prepare(root, root / "out", sizes=[SIZE, 64], workers=0, progress=False)
    return root / "out"


def stored(ds: ShardDataset, i: int) -> torch.Tensor:
    return to_tensor(np.asarray(ds.image(i)))


def bicubic_t(t: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (C, H, W) tensor -> PIL bicubic -> tensor (what the reference does to its images)."""
    arr = np.ascontiguousarray(t.permute(1, 2, 0).numpy())
    return to_tensor(np.asarray(Image.fromarray(arr).resize((size, size), Image.BICUBIC)))


def dihedral(t: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips/rotations of a (C, H, W) tensor."""
    out = []
    for flipped in (t, t.flip(-1)):
        out += [torch.rot90(flipped, k, dims=(-2, -1)) for k in range(4)]
    return out


def which_transform(t: torch.Tensor, original: torch.Tensor) -> int:
    matches = [k for k, v in enumerate(dihedral(original)) if torch.equal(v, t)]
    assert matches, "not a flip/rotation of the stored image"
    return matches[0]


def test_item_contents(prepared):
    ds = open_dataset(str(prepared), size=SIZE, split="test")
    item = ds[0]
    assert item["LR"].shape == (3, SIZE // 4, SIZE // 4)
    for key in ("LR_up", "HR", "Ref", "Ref_downup"):
        assert item[key].shape == (3, SIZE, SIZE)
    for key in ("LR", "LR_up", "HR", "Ref", "Ref_downup"):
        assert item[key].dtype == torch.uint8  # the model's [-1, 1] floats are made on the device
    assert item["index"] == 0 and "mask" not in item
    hr = stored(ds, 0)
    assert torch.equal(item["HR"], hr)  # test split: no augmentation
    assert torch.equal(item["LR"], bicubic_t(hr, SIZE // 4))
    assert torch.equal(item["LR_up"], bicubic_t(item["LR"], SIZE))
    assert torch.equal(item["Ref"], hr)  # ref_mode gt
    assert torch.equal(item["Ref_downup"], bicubic_t(bicubic_t(hr, SIZE // 4), SIZE))


def test_augmentation_train_only_and_independent_groups(prepared):
    test = open_dataset(str(prepared), size=SIZE, split="test")
    for epoch in range(3):
        test.set_epoch(epoch)
        assert all(torch.equal(test[i]["HR"], stored(test, i)) for i in range(len(test)))
    train = open_dataset(str(prepared), size=SIZE, split="train")
    assert train.augment and not test.augment
    input_t, ref_t = [], []
    for epoch in range(2):
        train.set_epoch(epoch)
        for i in range(len(train)):
            item, original = train[i], stored(train, i)
            k = which_transform(item["HR"], original)
            # LR / LR_up follow HR's transform; Ref / Ref_downup follow Ref's
            assert torch.equal(item["LR"], dihedral(bicubic_t(original, SIZE // 4))[k])
            r = which_transform(item["Ref"], original)
            updown = bicubic_t(bicubic_t(original, SIZE // 4), SIZE)
            assert torch.equal(item["LR_up"], dihedral(updown)[k])
            assert torch.equal(item["Ref_downup"], dihedral(updown)[r])
            input_t.append(k)
            ref_t.append(r)
    assert len(set(input_t)) == 8 and len(set(ref_t)) == 8
    differs = sum(a != b for a, b in zip(input_t, ref_t, strict=True))
    assert differs > len(input_t) // 2  # independent draws agree ~1/8 of the time
    off = open_dataset(str(prepared), size=SIZE, split="train", augment=False)
    assert torch.equal(off[0]["HR"], stored(off, 0))


def test_deterministic_per_seed_and_epoch(prepared):
    a = ShardDataset(prepared, size=SIZE, split="train", seed=3)
    b = ShardDataset(prepared, size=SIZE, split="train", seed=3)
    a.set_epoch(5)
    b.set_epoch(5)
    assert all(torch.equal(a[i]["Ref"], b[i]["Ref"]) for i in range(8))
    b.set_epoch(6)
    assert any(not torch.equal(a[i]["Ref"], b[i]["Ref"]) for i in range(8))


def test_dataloader_workers_match_and_pickle(prepared):
    ds = open_dataset(str(prepared), size=SIZE, split="train", ref_mode="other")
    ds.set_epoch(2)
    _ = ds[0]  # opens shard files in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[1]["HR"], ds[1]["HR"])
    serial = next(iter(DataLoader(ds, batch_size=6)))
    parallel = next(iter(DataLoader(ds, batch_size=6, num_workers=2)))
    for key in ("LR", "HR", "Ref"):
        assert torch.equal(serial[key], parallel[key])


def test_nested_fractions(prepared):
    n = len(open_dataset(str(prepared), size=SIZE, split="train"))
    keys = {}
    for f in (0.25, 0.5, 1.0):
        ds = open_dataset(str(prepared), size=SIZE, split="train", fraction=f)
        assert len(ds) == math.ceil(f * n)
        keys[f] = set(ds.keys)
    assert keys[0.25] < keys[0.5] < keys[1.0]
    tiny = open_dataset(str(prepared), size=SIZE, split="test", fraction=1e-6)
    assert len(tiny) == 1
    other_seed = open_dataset(str(prepared), size=SIZE, split="train", fraction=0.5, seed=9)
    assert set(other_seed.keys) != keys[0.5]


def test_ref_mode_gt_augmented(prepared):
    ds = open_dataset(str(prepared), size=SIZE, split="test", ref_mode="gt-augmented")
    again = open_dataset(str(prepared), size=SIZE, split="test", ref_mode="gt-augmented")
    again.set_epoch(4)
    for i in range(4):
        item = ds[i]
        assert torch.equal(item["HR"], stored(ds, i))
        assert not torch.equal(item["Ref"], item["HR"])
        assert torch.equal(item["Ref"], again[i]["Ref"])  # test split: fixed per item
        assert torch.equal(item["Ref_downup"], bicubic_t(bicubic_t(item["Ref"], 8), SIZE))
        # close to the image: same overall colour, well within the jitter range
        ref, hr = to_model_range(item["Ref"]), to_model_range(item["HR"])
        assert (ref.mean() - hr.mean()).abs() < 0.3
    train = open_dataset(str(prepared), size=SIZE, split="train", ref_mode="gt-augmented")
    r0 = train[0]["Ref"]
    train.set_epoch(1)
    assert not torch.equal(train[0]["Ref"], r0)


def test_ref_mode_other(prepared):
    ds = open_dataset(str(prepared), size=SIZE, split="test", ref_mode="other")
    images = [stored(ds, i) for i in range(len(ds))]
    partners = []
    for i in range(len(ds)):
        ref = ds[i]["Ref"]
        match = [j for j, img in enumerate(images) if torch.equal(img, ref)]
        assert len(match) == 1 and match[0] != i
        partners.append(match[0])
    assert sorted(partners) == list(range(len(ds)))  # a permutation without fixed points
    again = open_dataset(str(prepared), size=SIZE, split="test", ref_mode="other")
    assert torch.equal(again[0]["Ref"], ds[0]["Ref"])
    train = open_dataset(str(prepared), size=SIZE, split="train", ref_mode="other")
    assert train._partner is not None and all(p != i for i, p in enumerate(train._partner))


def test_open_dataset_errors(prepared, tmp_path):
    with pytest.raises(DataError, match=r"available: 32, 64"):
        open_dataset(str(prepared), size=48, split="train")
    with pytest.raises(DataError, match="paired"):
        open_dataset(str(prepared), size=SIZE, split="train", ref_mode="paired")
    with pytest.raises(DataError, match="split"):
        open_dataset(str(prepared), size=SIZE, split="val")
    with pytest.raises(DataError, match="fraction"):
        open_dataset(str(prepared), size=SIZE, split="train", fraction=0)
    with pytest.raises(DataError, match="ref_mode"):
        open_dataset(str(prepared), size=SIZE, split="train", ref_mode="nearest")
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(str(tmp_path / "nope"), size=SIZE, split="train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        open_dataset(str(tmp_path / "empty"), size=SIZE, split="train")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.png").write_bytes(b"x")
    with pytest.raises(DataError, match="prepare"):
        open_dataset(str(tmp_path / "raw"), size=SIZE, split="train")


def test_empty_test_split_is_an_error(tmp_path):
    Image.new("RGB", (32, 32), (10, 20, 30)).save(tmp_path / "a.png")
    Image.new("RGB", (32, 32), (40, 20, 30)).save(tmp_path / "b.png")
    prepare(tmp_path, tmp_path / "out", sizes=[32], test_fraction=0.0, workers=0, progress=False)
    assert len(open_dataset(str(tmp_path / "out"), size=32, split="train")) == 2
    with pytest.raises(DataError, match="'test' .* 0 items"):
        open_dataset(str(tmp_path / "out"), size=32, split="test")


def test_open_from_config(prepared):
    config = TrainConfig(data=str(prepared), size=SIZE, fraction=0.5, ref_mode="other", seed=1)
    ds = open_dataset_from_config(config, "train")
    assert isinstance(ds, ShardDataset) and ds.ref_mode == "other" and ds.augment
    assert len(ds) == math.ceil(0.5 * len(open_dataset(str(prepared), size=SIZE, split="train")))


def test_data_seed_fixes_the_images_while_seed_varies_their_draws(tmp_path):
    from ttsr.data import open_dataset

    common = dict(size=32, split="train", fraction=0.25, ref_mode="other")
    a = open_dataset(None, seed=0, data_seed=5, **common)
    b = open_dataset(None, seed=1, data_seed=5, **common)
    c = open_dataset(None, seed=0, data_seed=6, **common)
    assert a.keys == b.keys and a._partner == b._partner  # same subset, same unseen references
    assert a.keys != c.keys
    a.set_epoch(3)
    b.set_epoch(3)
    # different seeds: different augmentation of the same item
    assert any(not torch.equal(a[i]["HR"], b[i]["HR"]) for i in range(len(a)))


def test_uint8_items_become_the_references_floats_on_the_device(prepared):
    """Items stay uint8 to the device; `to_model_range` there gives exactly the reference's
    float32 x / 127.5 - 1 (computed here in numpy, as the loader did before)."""
    item = open_dataset(str(prepared), size=SIZE, split="train")[3]
    for key in ("LR", "HR", "Ref_downup"):
        pixels = item[key].numpy()
        expected = pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        floats = to_model_range(item[key])
        assert floats.dtype == torch.float32
        assert torch.equal(floats, torch.from_numpy(expected))
    floats = torch.rand(2, 3) * 2 - 1
    assert to_model_range(floats) is floats  # floats pass through (test batches, benchmarks)
