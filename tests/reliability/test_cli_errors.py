"""Every CLI error is one line and an exit code (`ttsr.cli_errors`), through the real commands:
bad weight files, unreadable checkpoints and manifests, unwritable outputs, an unreachable MLflow
server, Ctrl-C, an error nobody foresaw (and ``--debug`` / ``TTSR_DEBUG=1`` for its traceback),
and a full disk under ``ttsr.train --out`` and ``ttsr.data prepare --out``.

The bad-input table of tests/reliability/test_bad_input.py checks the exit-2 cases of flags and
configs; this file adds the other exit codes and the files that go bad.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from clis import AS_FROM_A_TERMINAL
from PIL import Image

from ttsr.cli_errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_IO, EXIT_UNAVAILABLE, EXIT_USAGE

from .conftest import (
    DATA,
    INFER,
    TINY_FLAGS,
    TRAIN,
    assert_one_error_line,
    env,
    fill,
    free_port,
    run,
)

VGG = [sys.executable, "-m", "ttsr.vgg"]
TRAIN_1 = [*TRAIN, *TINY_FLAGS, "--epochs", "1"]


def _tiny_checkpoint(path: Path) -> Path:
    from ttsr.checkpoint import save_checkpoint
    from ttsr.model import RANDOM_VGG, TTSR, ModelConfig

    torch.manual_seed(0)
    config = ModelConfig(n_feats=4, num_res_blocks=(1, 1, 1, 1))
    model = TTSR(config, vgg=RANDOM_VGG)
    return save_checkpoint(path, model_state=model.reference_state_dict(), model_config=config)


def _images(root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    lr, ref = root / "lr.png", root / "ref.png"
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(lr)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(ref)
    return lr, ref


def test_train_bad_vgg_weights_file_is_one_line(tmp_path):
    bad = tmp_path / "vgg.pth"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    out = run([*TRAIN_1, "--out", str(tmp_path / "o")], cwd=tmp_path, TTSR_VGG19_WEIGHTS=str(bad))
    last = assert_one_error_line(out, EXIT_USAGE, str(bad))
    assert "TTSR_VGG19_WEIGHTS" in last


def test_train_bad_init_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "init.pt"
    bad.write_bytes(b"not a checkpoint")
    argv = [*TRAIN_1, "--out", str(tmp_path / "o"), "--init-checkpoint", str(bad)]
    assert_one_error_line(run(argv, cwd=tmp_path), EXIT_USAGE, str(bad))


def test_train_unreachable_mlflow_server_is_one_line_before_training(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    out = run([*TRAIN_1, "--out", str(tmp_path / "o"), "--mlflow-uri", uri], cwd=tmp_path)
    assert_one_error_line(out, EXIT_UNAVAILABLE, uri)
    assert time.monotonic() - started < 60  # not after the client's 4-minute retry budget
    assert not (tmp_path / "o" / "checkpoints").exists()


def test_infer_truncated_checkpoint_is_one_line(tmp_path):
    ckpt = _tiny_checkpoint(tmp_path / "ttsr.pt")
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    lr, ref = _images(tmp_path)
    argv = [*INFER, "--checkpoint", str(ckpt), "--lr", str(lr), "--ref", str(ref)]
    out = run([*argv, "--out", str(tmp_path / "sr.png")], cwd=tmp_path)
    last = assert_one_error_line(out, EXIT_USAGE, str(ckpt))
    assert "not a PyTorch checkpoint" in last


def test_infer_unwritable_output_is_one_line(tmp_path):
    ckpt = _tiny_checkpoint(tmp_path / "ttsr.pt")
    lr, ref = _images(tmp_path)
    (tmp_path / "FILE").write_text("a file where a folder should be")
    argv = [*INFER, "--checkpoint", str(ckpt), "--lr", str(lr), "--ref", str(ref)]
    out = run([*argv, "--out", str(tmp_path / "FILE" / "sr.png")], cwd=tmp_path)
    assert_one_error_line(out, EXIT_IO, str(tmp_path / "FILE"))


@pytest.mark.parametrize("damage", ["truncated", "directory"])
def test_data_info_unreadable_manifest_is_one_line(tmp_path, damage):
    from ttsr.data import prepare

    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(src / f"{i}.png")
    prepared = tmp_path / "prepared"
    prepare(src, prepared, sizes=[32], test_fraction=0.5, workers=0, progress=False)
    manifest = prepared / "manifest.json"
    if damage == "truncated":
        manifest.write_text(manifest.read_text()[:40])
    else:
        manifest.unlink()
        manifest.mkdir()
    out = run([*DATA, "info", str(prepared)], cwd=tmp_path)
    assert_one_error_line(out, EXIT_USAGE, str(manifest))


def test_vgg_check_bad_file_is_one_line(tmp_path):
    bad = tmp_path / "vgg.pth"
    bad.write_bytes(b"\0" * 100)
    assert_one_error_line(run([*VGG, "check", str(bad)], cwd=tmp_path), EXIT_USAGE, str(bad))


def test_unforeseen_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    argv = [*DATA, "photos", "--out", str(tmp_path / "p"), "--count", "1", "--side", "0"]
    out = run(argv, cwd=tmp_path)
    last = assert_one_error_line(out, EXIT_FAILURE, "ValueError: ")
    assert last.endswith("(run with --debug for the traceback)"), last
    with_flag = [*DATA, "--debug", *argv[len(DATA) :]]
    for debug_argv, extra in ((with_flag, {}), (argv, {"TTSR_DEBUG": "1"})):
        shown = run(debug_argv, cwd=tmp_path, **extra)
        assert shown.returncode == 1
        assert "Traceback (most recent call last)" in shown.stderr, shown.stderr[-2000:]
        assert shown.stderr.strip().splitlines()[-1].startswith("ValueError: ")


def test_train_ctrl_c_is_one_line_exit_130(tmp_path):
    argv = [*TRAIN, *TINY_FLAGS, "--epochs", "500", "--out", str(tmp_path / "o")]
    log = tmp_path / "train.log"
    with open(log, "w") as stdout:
        proc = subprocess.Popen(
            [*AS_FROM_A_TERMINAL, *argv],
            cwd=tmp_path,
            env=env(),
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while "epoch 1/500" not in log.read_text():
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "no epoch 1 within 120 s"
                time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    done = subprocess.CompletedProcess(argv, proc.returncode, log.read_text(), stderr)
    assert_one_error_line(done, EXIT_INTERRUPTED, "interrupted")


# --- a full disk ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_out_on_a_full_disk_keeps_the_previous_checkpoint(tmp_path, small_fs, in_process):
    """`ttsr.train --out` on a 40 MiB filesystem: epoch 1 checkpoints, then the disk fills; the
    resumed run fails writing epoch 2's checkpoint with one line (exit 74) naming it and the
    checkpoint to resume; that checkpoint is intact (epoch 1, loadable), no temporary is left,
    the MLflow run is FAILED (not RUNNING); with space again the resume completes. The failing
    run is its own process (the exit code and last line under test); the first run and the
    final resume, which only set up and confirm, run in this one."""
    from mlflow.tracking import MlflowClient

    from ttsr.checkpoint import load_model, load_state

    fs = small_fs(40 * 1024)
    out_dir, uri = fs / "run", f"sqlite:///{tmp_path}/mlflow.db"
    latest = out_dir / "checkpoints" / "latest"
    first = in_process([*TRAIN_1, "--out", str(out_dir), "--mlflow-uri", uri], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = (latest / "state.pt").read_bytes()

    filler = fill(fs, leave_kib=2048)  # less than one state.pt (~9 MiB)
    resume = [*TRAIN, *TINY_FLAGS, "--epochs", "2", "--out", str(out_dir), "--mlflow-uri", uri]
    resume += ["--resume", str(latest)]
    out = run(resume, cwd=tmp_path)
    last = assert_one_error_line(out, EXIT_IO, str(latest))
    assert "No space left on device" in last and f"--resume {latest}" in last, last

    assert (latest / "state.pt").read_bytes() == before
    assert load_state(latest)["epoch"] == 1
    load_model(latest)  # the model file of the kept checkpoint loads
    left = sorted(p.name for p in latest.parent.iterdir())
    assert left == ["best", "latest"], left  # no half-written temporary
    (run_,) = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("ttsr").experiment_id]
    )
    assert run_.info.status == "FAILED"

    filler.unlink()
    again = in_process(resume, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert load_state(latest)["epoch"] == 2


@pytest.mark.slow
def test_prepare_on_a_full_disk_is_one_line_naming_the_shard(tmp_path, small_fs):
    photos = [*DATA, "photos", "--out", str(tmp_path / "src"), "--count", "30", "--side", "96"]
    photos = run(photos, cwd=tmp_path)
    assert photos.returncode == 0, photos.stderr[-2000:]
    fs = small_fs(200)
    argv = [*DATA, "prepare", "--src", str(tmp_path / "src"), "--out", str(fs / "p")]
    out = run([*argv, "--sizes", "64", "--workers", "1", "--no-progress"], cwd=tmp_path)
    last = assert_one_error_line(out, EXIT_IO, str(fs / "p" / "size=64"))
    assert "No space left on device" in last and ".parquet" in last, last
