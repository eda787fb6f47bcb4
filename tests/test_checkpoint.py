"""Checkpoints: the reference's layouts load, ours round-trips, bad files give CheckpointError."""

import os

import pytest
import torch

from ttsr.checkpoint import (
    FORMAT,
    CheckpointError,
    infer_model_config,
    load_checkpoint,
    load_model,
    load_state_dict_any,
    save_checkpoint,
)
from ttsr.model import RANDOM_VGG, TTSR, ModelConfig

CONFIG = ModelConfig(n_feats=8, num_res_blocks=(2, 1, 3, 1))


@pytest.fixture(scope="module")
def model() -> TTSR:
    torch.manual_seed(0)
    return TTSR(CONFIG, vgg=RANDOM_VGG).eval()


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(1, 3, s, s, generator=g) * 2 - 1 for s in (6, 24, 24, 24))


def test_infer_config_from_reference_layout(model):
    state = model.reference_state_dict()
    assert infer_model_config(state) == CONFIG
    default = TTSR(ModelConfig(), vgg=RANDOM_VGG).reference_state_dict()
    assert infer_model_config(default) == ModelConfig()


@pytest.mark.parametrize("variant", ["plain", "module", "with_copy", "module_with_copy"])
def test_reference_layouts_load_without_missing_or_unexpected_keys(model, tmp_path, variant):
    state = model.state_dict() if "with_copy" in variant else model.reference_state_dict()
    if variant.startswith("module"):
        state = {f"module.{k}": v for k, v in state.items()}
    path = tmp_path / "TTSR.pt"
    torch.save(state, path)

    normalised, config = load_state_dict_any(load_checkpoint(path))
    assert config == CONFIG
    assert set(normalised) == set(model.reference_state_dict())

    loaded = load_model(path)
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(*inputs()).sr, model(*inputs()).sr)
    for a, b in zip(loaded.LTE.parameters(), loaded.LTE_copy.parameters(), strict=True):
        assert torch.equal(a, b)


def test_own_format_round_trip(model, tmp_path):
    path = tmp_path / "sub" / "ckpt.pt"
    save_checkpoint(path, model_state=model.state_dict(), model_config=CONFIG, extra={"epoch": 3})
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    raw = load_checkpoint(path)
    assert raw["format"] == FORMAT and raw["epoch"] == 3
    assert raw["model_config"]["num_res_blocks"] == [2, 1, 3, 1]
    assert not any(k.startswith("LTE_copy.") for k in raw["model"])
    loaded = load_model(path)
    assert loaded.config == CONFIG
    with torch.no_grad():
        assert torch.equal(loaded(*inputs(1)).sr, model(*inputs(1)).sr)


def test_own_format_keeps_res_scale(tmp_path):
    config = ModelConfig(n_feats=4, num_res_blocks=(1, 1, 1, 1), res_scale=0.5)
    m = TTSR(config, vgg=RANDOM_VGG)
    save_checkpoint(tmp_path / "c.pt", model_state=m.reference_state_dict(), model_config=config)
    assert load_model(tmp_path / "c.pt").config.res_scale == 0.5


def test_save_replaces_atomically_and_rejects_reserved_extra(model, tmp_path):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"old")
    save_checkpoint(path, model_state=model.reference_state_dict(), model_config=CONFIG)
    assert load_checkpoint(path)["format"] == FORMAT
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(path, model_state={}, model_config=CONFIG, extra={"model": 1})
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt"]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pt")


def test_random_bytes(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as info:
        load_model(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_arbitrary_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({"model": TTSROutputLike()}, path)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(path)


class TTSROutputLike:
    """A custom class: weights_only loading must refuse to unpickle it."""


def test_state_dict_of_another_model(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)).state_dict(), path)
    with pytest.raises(CheckpointError, match="not a TTSR state dict"):
        load_model(path)


def test_missing_and_unexpected_keys_are_named(model, tmp_path):
    state = dict(model.reference_state_dict())
    del state["MainNet.conv23.weight"]
    state["MainNet.extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="MainNet.conv23.weight") as info:
        load_model(path)
    assert "MainNet.extra.weight" in str(info.value)


def test_shape_mismatch(model, tmp_path):
    state = dict(model.reference_state_dict())
    state["MainNet.conv12.weight"] = torch.zeros(5, 8, 3, 3)
    path = tmp_path / "shape.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="shape mismatch for MainNet.conv12.weight"):
        load_model(path)


def test_own_format_with_wrong_config(model, tmp_path):
    path = tmp_path / "wrong.pt"
    wrong = ModelConfig(n_feats=16, num_res_blocks=(2, 1, 3, 1))
    save_checkpoint(path, model_state=model.reference_state_dict(), model_config=wrong)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model(path)


def test_not_a_dict(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_checkpoint(path)
