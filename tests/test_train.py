import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from tiny import tiny_config
from torch.optim.optimizer import register_optimizer_step_post_hook

from ttsr import names
from ttsr.atomic import write_dir_atomically
from ttsr.checkpoint import load_model, load_state, resolve_checkpoint_dir
from ttsr.config import ConfigError, TrainConfig
from ttsr.model import TTSR
from ttsr.train import Callback, evaluate, step, train, trainer
from ttsr.train.step import D_BETAS

warnings.filterwarnings("ignore", message="VGG19 ImageNet weights not found")
ROOT = Path(__file__).resolve().parents[1]
TIMING = {names.EPOCH_SECONDS, names.TRAIN_IMAGES_PER_SECOND, names.PEAK_GPU_MEMORY_GIB}


@pytest.fixture(autouse=True)
def one_thread():
    # Two OpenMP threads on a shared 2-core machine spin against each other (10x slower convs).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(tmp_path, **changes) -> TrainConfig:
    """3 train items (1 step of 2 per epoch), 1 validation image, 32 px, n_feats 8."""
    return tiny_config(tmp_path, **changes)


def comparable(history):
    return [{k: v for k, v in m.items() if k not in TIMING} for m in history]


class OnEpochEnd(Callback):
    """A callback from a plain function of (metrics, checkpoint_dir)."""

    def __init__(self, fn):
        self.fn = fn

    def on_epoch_end(self, metrics, checkpoint_dir, images):
        self.fn(metrics, checkpoint_dir)


def trained(history):
    """The epochs that trained (epoch 0 is the validation before training)."""
    return [m for m in history if m[names.EPOCH] > 0]


class Counter:
    def __init__(self):
        self.n = 0


@pytest.fixture
def spies(monkeypatch):
    """Count perceptual-loss builds/calls, texture_features calls, discriminator builds and
    optimizer steps per optimizer kind."""
    counts = {
        k: Counter() for k in ("per_built", "per_called", "tpl", "d_built", "d_steps", "g_steps")
    }

    class SpyPerceptual(trainer.PerceptualLoss):
        def __init__(self, **kw):
            counts["per_built"].n += 1
            super().__init__(**kw)

        def forward(self, sr, hr):
            counts["per_called"].n += 1
            return super().forward(sr, hr)

    class SpyDiscriminator(trainer.Discriminator):
        def __init__(self, **kw):
            counts["d_built"].n += 1
            super().__init__(**kw)

    original_tf = TTSR.texture_features

    def spy_tf(self, sr):
        counts["tpl"].n += 1
        return original_tf(self, sr)

    def on_step(optimizer, args, kwargs):
        is_d = optimizer.defaults["betas"] == D_BETAS
        counts["d_steps" if is_d else "g_steps"].n += 1

    monkeypatch.setattr(trainer, "PerceptualLoss", SpyPerceptual)
    monkeypatch.setattr(trainer, "Discriminator", SpyDiscriminator)
    monkeypatch.setattr(TTSR, "texture_features", spy_tf)
    handle = register_optimizer_step_post_hook(on_step)
    yield {k: c for k, c in counts.items()}
    handle.remove()


def test_zero_weight_losses_are_never_built(tmp_path, spies):
    result = train(tiny(tmp_path), progress=False)
    assert spies["per_built"].n == spies["tpl"].n == spies["d_built"].n == spies["d_steps"].n == 0
    assert spies["g_steps"].n == 1
    m = result.history[-1]
    assert m[names.LOSS_PER] == m[names.LOSS_TPL] == m[names.LOSS_ADV] == m[names.LOSS_D] == 0
    assert m[names.LOSS_REC] > 0 and m[names.LR_D] == 0.0


def test_all_losses_and_gan_k_discriminator_steps(tmp_path, spies):
    config = tiny(tmp_path, per_w=0.01, tpl_w=0.01, adv_w=0.001, gan_k=3, epochs=2, init_epochs=1)
    result = train(config, progress=False)
    first, second = trained(result.history)
    # Epoch 1 is reconstruction only; then every loss joins.
    assert first[names.LOSS_PER] == first[names.LOSS_TPL] == first[names.LOSS_ADV] == 0
    assert all(
        second[k] != 0 for k in (names.LOSS_PER, names.LOSS_TPL, names.LOSS_ADV, names.LOSS_D)
    )
    assert spies["per_built"].n == 1 and spies["d_built"].n == 1
    assert spies["per_called"].n == 1 and spies["tpl"].n == 1
    assert spies["g_steps"].n == 2 and spies["d_steps"].n == 3  # gan_k per generator step
    assert second[names.LR_D] == config.lr_d


def test_checkpoints_metrics_and_grids(tmp_path):
    seen = []

    def on_epoch_end(metrics, checkpoint_dir):
        state = load_state(checkpoint_dir)
        seen.append((dict(metrics), state["epoch"], checkpoint_dir))

    config = tiny(tmp_path, epochs=2)
    result = train(config, callbacks=[OnEpochEnd(on_epoch_end)], progress=False)
    assert [e for _, e, _ in seen] == [0, 1, 2]  # the checkpoint was written before the callback
    last = seen[-1][0]
    for key in (
        names.LOSS_TOTAL,
        names.LOSS_REC,
        names.VAL_PSNR,
        names.VAL_SSIM,
        names.VAL_PSNR_RGB_C4,
        names.VAL_SSIM_RGB_C4,
        names.VAL_LPIPS_PROXY,
        names.BICUBIC_PSNR,
        names.EPOCH_SECONDS,
        names.TRAIN_IMAGES_PER_SECOND,
        names.PEAK_GPU_MEMORY_GIB,
        names.LR_MAIN,
        names.LR_LTE,
        names.LR_D,
        names.EPOCH,
    ):
        assert key in last and isinstance(last[key], int | float), key
    assert names.STOP_REASON not in seen[0][0] and names.STOP_REASON not in seen[1][0]
    assert last[names.STOP_REASON] == names.STOP_MAX_EPOCHS == result.stop_reason
    assert last[names.BEST_EPOCH] == result.best_epoch
    assert math.isfinite(last[names.VAL_PSNR]) and last[names.PEAK_GPU_MEMORY_GIB] == 0.0
    out = Path(config.out_dir)
    for epoch in (1, 2):
        for split in ("train", "test"):
            assert (out / "samples" / f"epoch_{epoch:03d}_{split}.png").is_file()
    # The best checkpoint loads as a plain model (ttsr.infer's path) and matches the run.
    model = load_model(result.best_checkpoint / "model.pt")
    state = load_state(result.best_checkpoint)
    assert state["epoch"] == result.best_epoch
    for k, v in model.reference_state_dict().items():
        assert torch.equal(v, state["model"][k])
    assert not any(p.name.startswith(".") for p in (out / "checkpoints").iterdir())


class TinyCritic(torch.nn.Module):
    """Stands in for the 17.8M-parameter discriminator: same role, cheap to save every epoch."""

    def __init__(self, **kw):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, 2, 1),
            torch.nn.LeakyReLU(0.2),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(4, 1),
        )

    def forward(self, x):
        return self.net(x)

    def config(self):
        return {"in_channels": 3, "crop_size": 32}


def test_resume_is_exact(tmp_path, monkeypatch):
    # Adversarial + TPL on: the gradient penalty draws from the global RNG, augmentation from
    # (seed, epoch, index), the data order from (seed, epoch).
    monkeypatch.setattr(trainer, "Discriminator", TinyCritic)
    common = dict(adv_w=0.001, tpl_w=0.01, gan_k=1, val_limit=1)
    full = train(tiny(tmp_path / "a", epochs=4, **common), progress=False)
    first = tiny(tmp_path / "b", epochs=2, **common)
    train(first, progress=False)
    latest = Path(first.out_dir) / "checkpoints" / "latest"
    resumed = train(tiny(tmp_path / "b", epochs=4, **common), resume_from=latest, progress=False)
    a = load_state(Path(tiny(tmp_path / "a").out_dir) / "checkpoints" / "latest")
    b = load_state(latest)
    assert a["epoch"] == b["epoch"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["discriminator"]:
        assert torch.equal(a["discriminator"][k], b["discriminator"][k]), k
    assert comparable(full.history) == comparable(resumed.history)
    assert len(resumed.history) == 5  # epochs 0-4


def test_a_run_after_another_in_the_same_process_is_unchanged(tmp_path, monkeypatch):
    # What Tune's reuse_actors relies on (tune/execution/tuner.py): a trial that runs in a
    # process where another trial ran first (all losses, another seed, more data) trains and
    # validates exactly as it would in a fresh one.
    monkeypatch.setattr(trainer, "Discriminator", TinyCritic)
    first = train(tiny(tmp_path / "a1", epochs=2), progress=False)
    other = dict(adv_w=0.001, tpl_w=0.01, per_w=0.01, gan_k=1, seed=7, fraction=0.06)
    train(tiny(tmp_path / "b", epochs=2, **other), progress=False)
    again = train(tiny(tmp_path / "a2", epochs=2), progress=False)
    assert comparable(first.history) == comparable(again.history)
    a = load_state(Path(tiny(tmp_path / "a1").out_dir) / "checkpoints" / "latest")
    b = load_state(Path(tiny(tmp_path / "a2").out_dir) / "checkpoints" / "latest")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_the_first_steps_of_a_run_are_a_nan_canary(tmp_path, monkeypatch):
    # Loss reads every 100 steps, but a run's first NAN_CANARY_STEPS steps read every step: the
    # NaN of step 3 (epoch 2, first step) stops the run before step 4.
    calls = Counter()
    original = step.reconstruction_loss

    def poisoned(sr, hr):
        calls.n += 1
        value = original(sr, hr)
        return value * math.nan if calls.n == 3 else value

    monkeypatch.setattr(step, "reconstruction_loss", poisoned)
    config = tiny(tmp_path, fraction=0.05, epochs=3, log_every_steps=100, sample_every=0)
    result = train(config, progress=False)
    assert calls.n == 3 and "non-finite training loss by step 3" in result.stop_detail
    assert trainer.NAN_CANARY_STEPS >= 3


def test_nan_loss_diverges_at_once_and_keeps_best(tmp_path, monkeypatch):
    calls = Counter()
    original = step.reconstruction_loss

    def poisoned(sr, hr):
        calls.n += 1
        value = original(sr, hr)
        return value * math.nan if calls.n == 3 else value

    monkeypatch.setattr(step, "reconstruction_loss", poisoned)
    # 2 steps per epoch: NaN in epoch 2, step 1; min_delta 0: epoch 1's small gain is a best
    config = tiny(tmp_path, fraction=0.05, epochs=5, min_delta=0.0)
    reports = []
    result = train(config, callbacks=[OnEpochEnd(lambda m, d: reports.append(m))], progress=False)
    assert calls.n == 3  # not a single step after the NaN
    assert result.stop_reason == names.STOP_DIVERGED
    assert "non-finite training loss by step 3" in result.stop_detail
    assert result.stop_signal == "non_finite_loss"
    assert reports[-1][names.STOP_SIGNAL] == "non_finite_loss"
    assert [m[names.EPOCH] for m in reports] == [0, 2 - 1, 2]
    assert math.isnan(reports[-1][names.VAL_PSNR]) and math.isnan(reports[-1][names.LOSS_TOTAL])
    assert reports[-1][names.STOP_REASON] == names.STOP_DIVERGED
    assert result.best_epoch == 1 and load_state(result.best_checkpoint)["epoch"] == 1


def test_white_output_diverges(tmp_path, monkeypatch):
    original = TTSR.forward

    def white_in_eval(self, *args):
        out = original(self, *args)
        return out if self.training else out._replace(sr=torch.ones_like(out.sr))

    monkeypatch.setattr(TTSR, "forward", white_in_eval)
    result = train(tiny(tmp_path, epochs=3), progress=False)
    # Epoch 0 (before training) is only the baseline; epoch 1's white output diverges.
    assert result.stop_reason == names.STOP_DIVERGED and len(result.history) == 2
    assert "saturated" in result.stop_detail and "epoch 1" in result.stop_detail
    assert result.stop_signal == "collapse"
    assert result.best_epoch == 0 and load_state(result.best_checkpoint)["epoch"] == 0


def test_patience_in_the_loop(tmp_path, monkeypatch):
    scripted = iter([10.0, 20.0, 22.0, 21.0, 21.5, 30.0])  # epoch 0 first
    original = evaluate.Evaluator.__call__

    def fake_validate(self, trainer):
        val = original(self, trainer)
        val.metrics[names.VAL_PSNR] = next(scripted)
        return val

    monkeypatch.setattr(evaluate.Evaluator, "__call__", fake_validate)
    result = train(tiny(tmp_path, epochs=5, patience=2, sample_every=0), progress=False)
    assert result.stop_reason == names.STOP_PATIENCE
    assert (result.best_epoch, result.best_val_psnr, len(result.history)) == (2, 22.0, 5)
    assert load_state(result.best_checkpoint)["epoch"] == 2
    # A finished run resumed with the same config does nothing more.
    again = train(
        tiny(tmp_path, epochs=5, patience=2, sample_every=0),
        resume_from=Path(tmp_path / "run" / "checkpoints" / "latest"),
        progress=False,
    )
    assert again.stop_reason == names.STOP_PATIENCE and len(again.history) == 5


def test_atomic_directory_swap(tmp_path):
    target = tmp_path / "latest"

    def write(value):
        return lambda d: (d / "state.pt").write_text(value)

    write_dir_atomically(target, write("one"))
    write_dir_atomically(target, write("two"))
    assert (target / "state.pt").read_text() == "two"

    def crash(d):
        (d / "state.pt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_dir_atomically(target, crash)
    assert (target / "state.pt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["latest"]
    # Died between the two renames: the old copy is found.
    os.rename(target, tmp_path / ".latest.old")
    assert resolve_checkpoint_dir(target) == tmp_path / ".latest.old"


def test_cli_config_errors_exit_2(capsys, tmp_path):
    from ttsr.train.cli import main

    assert main(["--size", "30", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: size:") and "\n" not in err
    bad = tmp_path / "c.yaml"
    bad.write_text("sizee: 32\n")
    assert main(["--config", str(bad)]) == 2
    assert "sizee" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path / "nope")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["--rec-w", "0"]) == 2
    assert "rec_w" in capsys.readouterr().err


def _cli(out, *extra):
    return [
        sys.executable,
        "-m",
        "ttsr.train",
        "--size",
        "32",
        "--batch-size",
        "2",
        "--fraction",
        "0.05",
        "--n-feats",
        "8",
        "--num-res-blocks",
        "1+1+1+1",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--val-limit",
        "1",
        "--no-progress",
        *extra,
    ]


def _wait_for_epoch(path: Path, epoch: int, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training exited early with {proc.returncode}")
        try:
            if load_state(path)["epoch"] >= epoch:
                return
        except Exception:  # noqa: BLE001 - not there yet
            pass
        time.sleep(0.2)
    raise AssertionError("no checkpoint in time")


@pytest.mark.slow
def test_sigkill_and_resume_match_uninterrupted(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    full = subprocess.run(
        _cli(tmp_path / "full", "--epochs", "3", "--patience", "5"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert full.returncode == 0, full.stderr[-2000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(out, "--epochs", "3", "--patience", "5"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latest = out / "checkpoints" / "latest"
    try:
        _wait_for_epoch(latest, 1, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert load_state(latest)["epoch"] < 3
    resumed = subprocess.run(
        [sys.executable, "-m", "ttsr.train", "--resume", str(latest), "--no-progress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_state(tmp_path / "full" / "checkpoints" / "latest")
    b = load_state(latest)
    assert comparable(a["history"]) == comparable(b["history"])
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


# --- epoch 0, budgets, validation modes, divergence signals, warm start -----------------------


def scripted_psnr(monkeypatch, values):
    """Evaluator returns these val_psnr values, epoch 0 first (the rest is measured)."""
    scripted = iter(values)
    original = evaluate.Evaluator.__call__

    def fake(self, trainer):
        val = original(self, trainer)
        val.metrics[names.VAL_PSNR] = next(scripted)
        return val

    monkeypatch.setattr(evaluate.Evaluator, "__call__", fake)


def test_epoch_1_collapse_is_measured_against_epoch_0(tmp_path, monkeypatch):
    scripted_psnr(monkeypatch, [26.0, 21.0, 30.0])
    result = train(tiny(tmp_path, epochs=3, sample_every=0), progress=False)
    assert result.stop_reason == names.STOP_DIVERGED
    assert "below its best 26.00 dB (epoch 0)" in result.stop_detail
    assert result.stop_signal == "psnr_floor"
    assert [m[names.EPOCH] for m in result.history] == [0, 1]
    assert result.best_epoch == 0 and load_state(result.best_checkpoint)["epoch"] == 0


def test_a_white_inpainting_box_diverges_a_healthy_run_does_not(tmp_path, monkeypatch):
    config = tiny(tmp_path, epochs=3, inpaint=True, sample_every=0)
    healthy = train(config, progress=False)
    assert healthy.stop_reason == names.STOP_MAX_EPOCHS, healthy.stop_detail
    assert all(m[names.VAL_WHITE_SHARE_MASK] < 0.05 for m in healthy.history)

    original = TTSR.forward
    after_epoch_0 = Counter()

    def white_box_once_trained(self, *args):
        out = original(self, *args)
        if self.training or not after_epoch_0.n:
            return out
        sr = out.sr.clone()
        h, w = sr.shape[-2:]
        sr[:, :, int(0.5 * h) : int(0.8 * h), int(0.5 * w) : int(0.8 * w)] = 1.0
        return out._replace(sr=sr)

    class Flip(Callback):
        def on_epoch_end(self, metrics, checkpoint_dir, images):
            after_epoch_0.n = 1

    monkeypatch.setattr(TTSR, "forward", white_box_once_trained)
    result = train(
        tiny(tmp_path / "white", epochs=3, inpaint=True), callbacks=[Flip()], progress=False
    )
    assert result.stop_reason == names.STOP_DIVERGED
    assert "whitening" in result.stop_detail and "inside the inpainting box" in result.stop_detail
    assert result.stop_signal == "whitening" and healthy.stop_signal is None
    assert [m[names.EPOCH] for m in result.history] == [0, 1]
    assert result.history[1][names.VAL_WHITE_SHARE_MASK] > 0.5  # (the box edges round)
    assert result.best_epoch == 0  # the white epoch never becomes the best


def test_a_finite_loss_spike_diverges_inside_the_epoch(tmp_path, monkeypatch):
    calls = Counter()
    original = step.reconstruction_loss

    def spiking(sr, hr):
        calls.n += 1
        value = original(sr, hr)
        return value * 1000.0 if calls.n == 15 else value

    monkeypatch.setattr(step, "reconstruction_loss", spiking)
    # 0.3 of the 74 sample photos, batch 2: 11 steps per epoch; the spike is step 15.
    config = tiny(tmp_path, fraction=0.3, epochs=3, sample_every=0)
    result = train(config, progress=False)
    assert calls.n == 15  # stopped at the step it saw (the CPU checks every step)
    assert result.stop_reason == names.STOP_DIVERGED
    assert "loss spike at step 15" in result.stop_detail
    assert result.stop_signal == "loss_spike"
    assert math.isnan(result.history[-1][names.VAL_PSNR])
    assert result.best_epoch == 1


def test_a_budget_gives_every_data_fraction_the_same_steps(tmp_path):
    steps = {}
    for fraction in (0.05, 0.2):
        config = tiny(
            tmp_path / str(fraction), fraction=fraction, budget_steps=6, epochs=3, sample_every=0
        )
        result = train(config, progress=False)
        steps[fraction] = [m[names.STEP] for m in result.history]
        images = result.history[-1][names.IMAGES_SEEN]
        assert images == 6 * 2
    assert steps[0.05] == steps[0.2] == [0, 2, 4, 6]


def test_budget_resume_is_exact(tmp_path):
    common = dict(fraction=0.2, budget_steps=7, sample_every=0, val_limit=1)
    full = train(tiny(tmp_path / "a", epochs=3, **common), progress=False)
    first = tiny(tmp_path / "b", epochs=3, **common)
    run = tmp_path / "b" / "run" / "checkpoints" / "latest"
    scripted = []

    class StopAfter1(Callback):
        def on_epoch_end(self, metrics, checkpoint_dir, images):
            scripted.append(metrics[names.STEP])
            if metrics[names.EPOCH] == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(first, callbacks=[StopAfter1()], progress=False)
    resumed = train(first, resume_from=run, progress=False)
    assert scripted == [0, 2]  # rounds end at steps 7 * r // 3
    assert [m[names.STEP] for m in resumed.history] == [0, 2, 4, 7]
    assert comparable(full.history) == comparable(resumed.history)


def test_unseen_reference_metrics_are_logged_and_differ(tmp_path):
    config = tiny(
        tmp_path,
        fraction=0.3,
        epochs=2,
        val_limit=4,
        val_ref_modes=["other"],
        early_stop_metric="val_psnr_other",
        sample_every=0,
    )
    result = train(config, progress=False)
    for m in result.history:
        assert math.isfinite(m["val_psnr_other"]) and math.isfinite(m["val_ssim_other"])
        assert math.isfinite(m["val_psnr_rgb_c4_other"]) and 0 < m["val_ssim_rgb_c4_other"] <= 1
        assert "val_perceptual_other" in m
    last = result.history[-1]
    # The same model, the same inputs, another reference: a different answer.
    assert abs(last[names.VAL_PSNR] - last["val_psnr_other"]) > 1e-3
    best = max(result.history, key=lambda m: m["val_psnr_other"])
    assert result.best_epoch == best[names.EPOCH]  # early stopping watched the unseen ones


def test_warm_start_from_a_checkpoint(tmp_path):
    first = train(tiny(tmp_path / "a", epochs=1, sample_every=0), progress=False)
    model_file = first.best_checkpoint / "model.pt"
    warm = train(
        tiny(tmp_path / "b", epochs=1, sample_every=0, init_checkpoint=str(model_file)),
        progress=False,
    )
    # Epoch 0 of the warm start measures the loaded weights.
    assert warm.history[0][names.VAL_PSNR] == pytest.approx(first.best_val_psnr, abs=1e-6)
    with pytest.raises(ConfigError, match="init_checkpoint: .* n_feats 8"):
        train(tiny(tmp_path / "c", n_feats=16, init_checkpoint=str(model_file)), progress=False)


def test_a_16_px_run_validates_without_an_rgb_crop_ssim(tmp_path):
    # 16 px minus the 4-px border on each side leaves 8x8: no 11x11 SSIM window fits, so that
    # one metric is NaN (the 40-trial load test at 16 px failed every trial before)
    result = train(tiny(tmp_path, size=16), progress=False)
    last = result.history[-1]
    assert math.isnan(last[names.VAL_SSIM_RGB_C4])
    for key in (names.VAL_PSNR, names.VAL_SSIM, names.VAL_PSNR_RGB_C4):
        assert math.isfinite(last[key]), key
