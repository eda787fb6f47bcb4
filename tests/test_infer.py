"""`python -m ttsr.infer` on real photographs (scikit-image's astronaut) and its error messages."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from ttsr.checkpoint import load_model, save_checkpoint
from ttsr.infer import main, prepare_pair, super_resolve
from ttsr.model import RANDOM_VGG, TTSR, ModelConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ModelConfig(n_feats=8, num_res_blocks=(1, 1, 1, 1))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny checkpoint, an LR face crop (12×10) and a reference crop (50×42: cropped to 48×40)."""
    root = tmp_path_factory.mktemp("infer")
    torch.manual_seed(0)
    model = TTSR(CONFIG, vgg=RANDOM_VGG)
    ckpt = root / "ckpt.pt"
    save_checkpoint(ckpt, model_state=model.reference_state_dict(), model_config=CONFIG)
    photo = data.astronaut()  # (512, 512, 3) uint8
    hr = Image.fromarray(photo[40:200, 140:300])
    lr = hr.resize((10, 12), Image.BICUBIC)
    ref = Image.fromarray(photo[60:110, 170:212])
    lr.save(root / "lr.png")
    ref.save(root / "ref.png")
    return {"root": root, "ckpt": ckpt, "lr": root / "lr.png", "ref": root / "ref.png"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "ttsr.infer", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def test_prepare_pair_follows_the_reference_test_mode():
    lr = np.zeros((5, 7, 3), np.uint8)
    ref = np.full((23, 18, 3), 255, np.uint8)
    batch = prepare_pair(lr, ref)
    assert batch["lr"].shape == (1, 3, 5, 7)
    assert batch["lr_up"].shape == (1, 3, 20, 28)
    assert batch["ref"].shape == batch["ref_downup"].shape == (1, 3, 20, 16)
    assert batch["lr"].min() == -1.0 and batch["ref"].max() == 1.0


@pytest.mark.slow
def test_cli_single_pair_end_to_end(files, tmp_path):
    out = tmp_path / "sr.png"
    result = run_cli(
        "--checkpoint", str(files["ckpt"]), "--lr", str(files["lr"]), "--ref", str(files["ref"]),
        "--out", str(out), "--search-chunk", "7",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    sr = np.asarray(Image.open(out))
    assert sr.shape == (48, 40, 3) and sr.dtype == np.uint8
    lr = np.asarray(Image.open(files["lr"]))
    ref = np.asarray(Image.open(files["ref"]))
    expected = super_resolve(load_model(files["ckpt"]), lr, ref, device=torch.device("cpu"))
    assert np.abs(sr.astype(int) - expected.astype(int)).max() <= 1

    bad = run_cli("--checkpoint", str(files["lr"]), "--lr", str(files["lr"]),
                  "--ref", str(files["ref"]), "--out", str(out))  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "not a PyTorch checkpoint" in bad.stderr


@pytest.mark.slow
def test_cli_folders_end_to_end(files, tmp_path):
    lr_dir, ref_dir, out_dir = tmp_path / "lr", tmp_path / "ref", tmp_path / "out"
    lr_dir.mkdir()
    ref_dir.mkdir()
    for name in ("a", "b"):
        Image.open(files["lr"]).save(lr_dir / f"{name}.png")
        Image.open(files["ref"]).save(ref_dir / f"{name}.jpg")
    result = run_cli("--checkpoint", str(files["ckpt"]), "--lr", str(lr_dir),
                     "--ref", str(ref_dir), "--out", str(out_dir))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.png", "b.png"]
    assert np.asarray(Image.open(out_dir / "a.png")).shape == (48, 40, 3)


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--search-chunk" in capsys.readouterr().out


def error_of(capsys, *args: str) -> str:
    assert main(list(args)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_errors(files, tmp_path, capsys):
    ck, lr, ref = str(files["ckpt"]), str(files["lr"]), str(files["ref"])
    out = str(tmp_path / "o.png")
    missing = error_of(capsys, "--checkpoint", ck, "--lr", "x.png", "--ref", ref, "--out", out)
    assert "--lr not found: x.png" in missing
    text = tmp_path / "notes.png"
    text.write_text("hello")
    assert "not a readable image" in error_of(capsys, "--checkpoint", ck, "--lr", str(text),
                                              "--ref", ref, "--out", out)  # fmt: skip
    tiny_ref = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((3, 40, 3), np.uint8)).save(tiny_ref)
    assert "at least 4x4" in error_of(capsys, "--checkpoint", ck, "--lr", lr,
                                      "--ref", str(tiny_ref), "--out", out)  # fmt: skip
    assert "checkpoint not found" in error_of(capsys, "--checkpoint", str(tmp_path / "no.pt"),
                                              "--lr", lr, "--ref", ref, "--out", out)  # fmt: skip
    other = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), other)
    assert "not a TTSR state dict" in error_of(capsys, "--checkpoint", str(other), "--lr", lr,
                                               "--ref", ref, "--out", out)  # fmt: skip
    assert "--search-chunk" in error_of(capsys, "--checkpoint", ck, "--lr", lr, "--ref", ref,
                                        "--out", out, "--search-chunk", "-3")  # fmt: skip


def test_folder_errors(files, tmp_path, capsys):
    lr_dir, ref_dir = tmp_path / "lr", tmp_path / "ref"
    lr_dir.mkdir()
    ref_dir.mkdir()
    Image.open(files["lr"]).save(lr_dir / "face.png")
    err = error_of(capsys, "--checkpoint", str(files["ckpt"]), "--lr", str(lr_dir),
                   "--ref", str(ref_dir), "--out", str(tmp_path / "out"))  # fmt: skip
    assert "no reference" in err and "face.png" in err
    err = error_of(capsys, "--checkpoint", str(files["ckpt"]), "--lr", str(lr_dir),
                   "--ref", str(files["ref"]), "--out", str(tmp_path / "out"))  # fmt: skip
    assert "both be files or both be directories" in err
