"""VGG19 weights are looked up (argument, environment, torchvision cache), never downloaded."""

import pytest
import torch

from ttsr.vgg import ENV_VAR, TORCHVISION_FILE, random_vgg19_features, vgg19_features


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A torchvision-layout VGG19 file ("features.N.weight" keys), random but recognisable."""
    torch.manual_seed(0)
    features = random_vgg19_features()
    path = tmp_path_factory.mktemp("vgg") / TORCHVISION_FILE
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path, features.state_dict()["0.weight"].clone()


@pytest.fixture
def no_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    return tmp_path


def test_random_init_warns_loudly(no_cache, caplog):
    with pytest.warns(UserWarning, match="NOT comparable"):
        features, pretrained = vgg19_features()
    assert pretrained is False
    assert len(features) == 37 and isinstance(features[0], torch.nn.Conv2d)
    assert "RANDOM" in caplog.text


def test_explicit_path(no_cache, weights_file):
    path, first = weights_file
    features, pretrained = vgg19_features(path)
    assert pretrained is True
    assert torch.equal(features[0].weight, first)


def test_environment_variable(no_cache, weights_file, monkeypatch):
    path, first = weights_file
    monkeypatch.setenv(ENV_VAR, str(path))
    features, pretrained = vgg19_features()
    assert pretrained and torch.equal(features[0].weight, first)


def test_torchvision_cache(no_cache, weights_file):
    path, first = weights_file
    (no_cache / "checkpoints").mkdir()
    (no_cache / "checkpoints" / TORCHVISION_FILE).symlink_to(path)
    features, pretrained = vgg19_features()
    assert pretrained and torch.equal(features[0].weight, first)


def test_missing_explicit_path_is_an_error(no_cache):
    with pytest.raises(ValueError, match="nope.pth"):
        vgg19_features(no_cache / "nope.pth")


def test_bad_file_is_an_error_naming_the_path(no_cache):
    bad = no_cache / "bad.pth"
    bad.write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="bad.pth"):
        vgg19_features(bad)
    other = no_cache / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="other.pth.*not a torchvision VGG19"):
        vgg19_features(other)
