"""VGG19 weights are looked up (argument, environment, torchvision cache), never downloaded by
training; a file that is not VGG19 weights is one line naming the path, never a traceback."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.models import VGG19_Weights

import ttsr.vgg.__main__ as vgg_cli
from ttsr.vgg import (
    ENV_VAR,
    TORCHVISION_BYTES,
    TORCHVISION_FILE,
    TORCHVISION_SHA256,
    TORCHVISION_URL,
    VGGWeightsError,
    find_imagenet_weights,
    missing_weights_message,
    random_vgg19_features,
    vgg19_features,
    vgg19_layers,
)

REPO = Path(__file__).resolve().parent.parent


def _torchvision_layout(features: torch.nn.Sequential) -> dict[str, torch.Tensor]:
    return {f"features.{k}": v for k, v in features.state_dict().items()}


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A torchvision-layout VGG19 file ("features.N.weight" keys), random but recognisable."""
    torch.manual_seed(0)
    features = random_vgg19_features()
    path = tmp_path_factory.mktemp("vgg") / TORCHVISION_FILE
    torch.save(_torchvision_layout(features), path)
    return path, features.state_dict()["0.weight"].clone()


@pytest.fixture(scope="module")
def legacy_file(tmp_path_factory):
    """The same layout in torch.save's old (non-zip) format, the format of torchvision's file."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("vgg-legacy") / "legacy.pth"
    torch.save(
        _torchvision_layout(random_vgg19_features()), path, _use_new_zipfile_serialization=False
    )
    return path


@pytest.fixture
def no_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    return tmp_path


def _cut(src: Path, dst: Path, keep: float) -> Path:
    with src.open("rb") as f:
        dst.write_bytes(f.read(int(src.stat().st_size * keep)))
    return dst


def _one_line_error(excinfo, *fragments: str) -> str:
    text = str(excinfo.value)
    assert "\n" not in text, text
    for fragment in fragments:
        assert re.search(fragment, text), (fragment, text)
    return text


def test_torchvision_constants_agree_with_torchvision():
    # the same file torchvision downloads; its name carries the start of its sha256
    assert VGG19_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1] == TORCHVISION_FILE
    assert TORCHVISION_SHA256.startswith(re.search(r"-([0-9a-f]+)\.", TORCHVISION_FILE).group(1))
    assert round(TORCHVISION_BYTES / 2**20, 3) == VGG19_Weights.IMAGENET1K_V1.meta["_file_size"]
    assert VGG19_Weights.IMAGENET1K_V1.url == TORCHVISION_URL


def test_our_vgg19_layers_are_torchvisions():
    """ttsr builds VGG19's `features` itself (importing torchvision costs ~2 s a process): the
    same modules in the same order, the same keys and shapes, the same default init."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(3)
    theirs = make_layers(cfgs["E"], batch_norm=False)  # what vgg19().features is built from
    torch.manual_seed(3)
    ours = vgg19_layers()
    assert [repr(m) for m in ours] == [repr(m) for m in theirs]
    theirs_state, ours_state = theirs.state_dict(), ours.state_dict()
    assert list(ours_state) == list(theirs_state)
    for key, value in theirs_state.items():
        torch.testing.assert_close(ours_state[key], value, rtol=0, atol=0)


def test_ttsr_does_not_import_torchvision():
    code = "import sys, ttsr.train.loop, ttsr.vgg; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_random_init_warns_loudly(no_cache, caplog):
    with pytest.warns(UserWarning, match="NOT comparable.*python -m ttsr.vgg download"):
        features, pretrained = vgg19_features()
    assert pretrained is False
    assert len(features) == 37 and isinstance(features[0], torch.nn.Conv2d)
    assert "RANDOM" in caplog.text


def test_explicit_path(no_cache, weights_file):
    path, first = weights_file
    features, pretrained = vgg19_features(path)
    assert pretrained is True
    assert torch.equal(features[0].weight, first)
    assert find_imagenet_weights(path) == path


def test_environment_variable(no_cache, weights_file, monkeypatch):
    path, first = weights_file
    monkeypatch.setenv(ENV_VAR, str(path))
    features, pretrained = vgg19_features()
    assert pretrained and torch.equal(features[0].weight, first)
    assert find_imagenet_weights() == path


def test_torchvision_cache(no_cache, weights_file):
    path, first = weights_file
    (no_cache / "checkpoints").mkdir()
    (no_cache / "checkpoints" / TORCHVISION_FILE).symlink_to(path)
    features, pretrained = vgg19_features()
    assert pretrained and torch.equal(features[0].weight, first)
    assert find_imagenet_weights() == no_cache / "checkpoints" / TORCHVISION_FILE


def test_old_torch_format_loads(no_cache, legacy_file):
    assert vgg19_features(legacy_file)[1] is True
    assert find_imagenet_weights(legacy_file) == legacy_file  # loaded fully: not torchvision's size


def test_nothing_found_is_none_and_the_message_names_the_fix(no_cache):
    assert find_imagenet_weights() is None
    message = missing_weights_message()
    assert "\n" not in message
    for part in ("python -m ttsr.vgg download", ENV_VAR, TORCHVISION_FILE, "--allow-random-vgg"):
        assert part in message
    assert str(no_cache / "checkpoints" / TORCHVISION_FILE) in message


def test_missing_explicit_path_is_an_error(no_cache, monkeypatch):
    with pytest.raises(VGGWeightsError, match="not found: .*nope.pth"):
        vgg19_features(no_cache / "nope.pth")
    monkeypatch.setenv(ENV_VAR, str(no_cache / "typo.pth"))
    with pytest.raises(VGGWeightsError) as excinfo:
        find_imagenet_weights()
    _one_line_error(excinfo, "typo.pth", re.escape(f"${ENV_VAR}"))
    assert issubclass(VGGWeightsError, ValueError)  # what callers caught before


@pytest.fixture
def bad_files(no_cache, weights_file, legacy_file):
    """(file, what the message must say) for every way a weights file can be wrong."""
    other = no_cache / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    shapes = no_cache / "shapes.pth"
    state = _torchvision_layout(random_vgg19_features())
    state["features.0.weight"] = torch.zeros(3, 3)
    torch.save(state, shapes)
    pickled = no_cache / "model.pth"
    torch.save(torch.nn.Linear(2, 2), pickled)
    (no_cache / "text.pth").write_bytes(b"not a torch file at all")
    (no_cache / "empty.pth").write_bytes(b"")
    return [
        (no_cache / "text.pth", "not a torch file"),
        (no_cache / "empty.pth", "empty file"),
        (_cut(weights_file[0], no_cache / "cut-zip.pth", 0.5), "truncated or corrupt"),
        (_cut(legacy_file, no_cache / "cut-legacy.pth", 0.5), "truncated"),
        (other, "not a torchvision VGG19 state dict .*missing 0.weight.*unexpected conv.weight"),
        (shapes, "not a torchvision VGG19 state dict .*wrong shape or dtype: 0.weight"),
        (pickled, r"pickled Python object \(torch.nn.modules.linear.Linear\)"),
    ]


def test_bad_files_are_one_line_errors_naming_the_path(bad_files, monkeypatch):
    for path, what in bad_files:
        for call in (vgg19_features, find_imagenet_weights):
            with pytest.raises(VGGWeightsError) as excinfo:
                call(path)
            _one_line_error(excinfo, re.escape(str(path)), what, "python -m ttsr.vgg download")
        monkeypatch.setenv(ENV_VAR, str(path))  # issue 15: this ended in a traceback
        with pytest.raises(VGGWeightsError) as excinfo:
            vgg19_features()
        _one_line_error(excinfo, re.escape(f"{path} (from ${ENV_VAR})"), what)
        monkeypatch.delenv(ENV_VAR)


def test_a_bad_file_in_the_cache_is_an_error_not_random_weights(no_cache, weights_file):
    (no_cache / "checkpoints").mkdir()
    cached = _cut(weights_file[0], no_cache / "checkpoints" / TORCHVISION_FILE, 0.3)
    for call in (vgg19_features, find_imagenet_weights):
        with pytest.raises(VGGWeightsError) as excinfo:
            call()
        _one_line_error(excinfo, re.escape(str(cached)), "torchvision cache", "delete it")


def test_quick_check_trusts_torchvision_header_and_size(no_cache, legacy_file):
    """find_imagenet_weights does not read 548 MB: a file with torchvision's format header and
    exact size passes it; `check` and training, which read everything, still refuse it."""
    fake = no_cache / "checkpoints" / TORCHVISION_FILE
    fake.parent.mkdir()
    with legacy_file.open("rb") as f:
        fake.write_bytes(f.read(64))
    os.truncate(fake, TORCHVISION_BYTES)  # sparse: costs no disk
    assert find_imagenet_weights() == fake
    with pytest.raises(VGGWeightsError, match="corrupt"):
        vgg19_features()


def test_check_cli(weights_file, tmp_path):
    path, _ = weights_file
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(TORCH_HOME=str(tmp_path / "torch-home"), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-m", "ttsr.vgg", "check", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert f"{path} (from the command line)" in out.stdout
    assert "valid: torchvision VGG19 `features` weights (32 tensors)" in out.stdout
    assert "not torchvision's ImageNet file" in out.stdout
    assert "found in sys.modules" not in out.stderr  # `python -m` loaded the package once


def test_check_cli_errors_are_one_line(no_cache, monkeypatch, capsys):
    bad = no_cache / "bad.pth"
    bad.write_bytes(b"garbage")
    monkeypatch.setenv(ENV_VAR, str(bad))
    assert vgg_cli.main(["check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.match(rf"error: VGG19 weights {re.escape(str(bad))} \(from \${ENV_VAR}\): ", err)

    monkeypatch.delenv(ENV_VAR)
    assert vgg_cli.main(["status"]) == 2  # nothing anywhere
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "python -m ttsr.vgg download" in err


def test_random_vgg_is_one_network_whatever_the_seed():
    # val_perceptual with random features must be the same measure in every trial.
    import torch

    from ttsr.vgg import random_vgg19_features

    torch.manual_seed(0)
    a = random_vgg19_features()
    state = torch.get_rng_state()
    torch.manual_seed(1)
    b = random_vgg19_features()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    torch.manual_seed(0)
    random_vgg19_features()
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not consumed
    w = a[0].weight
    assert abs(w.std().item() - (2.0 / (w.shape[0] * 9)) ** 0.5) < 0.02  # kaiming fan_out
