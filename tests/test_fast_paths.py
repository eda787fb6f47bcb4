"""The fast paths' self-test (ttsr/fast_paths.py) on the CPU: a healthy build keeps every fast
path; a fast path made to fail or to disagree (a test double) is switched off, said once and
recorded in the `fast_paths` tag. The CUDA-only paths (channels_last) run the same machinery."""

from __future__ import annotations

import pytest
import torch
from test_train import tiny as train_tiny

from ttsr import fast_paths
from ttsr.fast_paths import Check, FastPaths, self_test
from ttsr.train.trainer import IMAGE_KEYS, build_trainer

pytestmark = pytest.mark.filterwarnings("ignore:VGG19 ImageNet weights not found")
pytest.importorskip("triton")


@pytest.fixture(autouse=True)
def one_thread_no_vgg(monkeypatch, tmp_path):
    monkeypatch.delenv("TTSR_VGG19_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def batch(size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    items = {k: torch.rand(2, 3, size, size, generator=g) * 2 - 1 for k in IMAGE_KEYS}
    items["LR"] = torch.rand(2, 3, size // 4, size // 4, generator=g) * 2 - 1
    return items


def trainer_with_every_cpu_fast_path(tmp_path):
    """bf16 autocast, the fused search (Triton's interpreter), the critic, fused Adam."""
    config = train_tiny(tmp_path, amp="bf16", search_method="fused", adv_w=0.001, sample_every=0)
    return build_trainer(config)


def test_a_healthy_build_keeps_every_fast_path(tmp_path):
    trainer = trainer_with_every_cpu_fast_path(tmp_path)
    rng = torch.get_rng_state()
    said = []
    kept, paths = self_test(trainer, batch(), log=said.append)
    assert kept is trainer and said == []
    assert paths.on == ["fused_search", "amp", "gp_autocast", "fused_adam"]
    assert paths.off == {}
    assert paths.tag() == "on: fused_search, amp, gp_autocast, fused_adam"
    assert torch.equal(torch.get_rng_state(), rng)  # the run's random stream is untouched


def test_a_failing_or_disagreeing_path_is_switched_off_said_once_and_tagged(tmp_path):
    trainer = build_trainer(train_tiny(tmp_path, sample_every=0))
    switched = []

    def boom(trainer, batch):
        raise RuntimeError("illegal memory access\nsecond line")

    checks = (
        Check("crashes", lambda t: True, boom, lambda t: switched.append("crashes") or t),
        Check(
            "disagrees", lambda t: True, lambda t, b: "off by 3", lambda t: switched.append(2) or t
        ),
        Check("healthy", lambda t: True, lambda t, b: None, lambda t: pytest.fail("no fallback")),
        Check("unused", lambda t: False, boom, lambda t: pytest.fail("not applicable")),
    )
    said = []
    _, paths = self_test(trainer, batch(), checks=checks, log=said.append)
    assert switched == ["crashes", 2]
    assert said == [
        "fast path crashes is off for this run: error: RuntimeError: illegal memory access",
        "fast path disagrees is off for this run: off by 3",
    ]
    off = "crashes (error: RuntimeError: illegal memory access), disagrees (off by 3)"
    assert paths.tag() == f"on: healthy; off: {off}"


def test_a_disagreeing_fused_search_falls_back_to_the_chunked_one(tmp_path, monkeypatch):
    trainer = build_trainer(train_tiny(tmp_path, search_method="fused", sample_every=0))
    real = fast_paths.relevance_search

    def wrong_kernel(query, key, *, method, dtype):
        best, index = real(query, key, method=method, dtype=dtype)
        if method == "fused":
            return best, (index + 1) % (key.shape[-1] * key.shape[-2])  # not near-ties
        return best, index

    monkeypatch.setattr(fast_paths, "relevance_search", wrong_kernel)
    trainer, paths = self_test(trainer, batch(), log=lambda line: None)
    assert "fused_search" in paths.off and "indices are not near-ties" in paths.off["fused_search"]
    assert trainer.config.search_method == "chunked"
    assert trainer.model.SearchTransfer.method == "chunked"


def test_a_disagreeing_amp_forward_falls_back_to_fp32(tmp_path, monkeypatch):
    trainer = build_trainer(train_tiny(tmp_path, amp="bf16", sample_every=0))
    monkeypatch.setattr(fast_paths, "psnr", lambda a, b: torch.tensor([12.0]))
    trainer, paths = self_test(trainer, batch(), log=lambda line: None)
    assert paths.off == {"amp": "PSNR vs fp32 12.0 dB < 30"}
    assert trainer.amp_dtype is None and trainer.config.amp == "off"


def test_a_disagreeing_gradient_penalty_runs_in_fp32(tmp_path, monkeypatch):
    trainer = build_trainer(train_tiny(tmp_path, amp="bf16", adv_w=0.001, sample_every=0))

    def penalty_wrong_under_autocast(d, real, fake):
        return torch.tensor(2.0 if torch.is_autocast_enabled("cpu") else 1.0)

    monkeypatch.setattr(fast_paths, "gradient_penalty", penalty_wrong_under_autocast)
    trainer, paths = self_test(trainer, batch(), log=lambda line: None)
    assert paths.off == {"gp_autocast": "penalty 2 vs fp32 1"}
    assert trainer.step.gp_autocast is False and trainer.amp_dtype == torch.bfloat16


REAL_ADAM_STEP = fast_paths.adam_step


def wrong_fused_adam(params, *args, fused, **kwargs):
    """Adam's functional step whose fused form moves every weight 1e-3 too far."""
    REAL_ADAM_STEP(params, *args, fused=fused, **kwargs)
    if fused:
        for p in params:
            p.add_(1e-3)


def test_a_disagreeing_fused_adam_falls_back_to_plain_adam(tmp_path, monkeypatch):
    trainer = build_trainer(train_tiny(tmp_path, sample_every=0))
    assert trainer.optimizer.defaults["fused"]
    monkeypatch.setattr(fast_paths, "adam_step", wrong_fused_adam)
    trainer, paths = self_test(trainer, batch(), log=lambda line: None)
    assert "weights differ" in paths.off["fused_adam"]
    assert not trainer.optimizer.defaults["fused"] and trainer.config.fused_optim is False


def test_the_tag_stays_short():
    paths = FastPaths(on=["fused_adam"], off={"fused_search": "x" * 400})
    assert len(paths.tag()) == fast_paths.TAG_LIMIT and paths.tag().endswith("…")
    assert FastPaths().tag() == "none"


def test_the_fallback_is_tagged_on_the_mlflow_run(tmp_path, monkeypatch, capsys):
    mlflow = pytest.importorskip("mlflow")
    from ttsr.tracking import MlflowCallback, MlflowTracker
    from ttsr.train import train

    monkeypatch.setattr(fast_paths, "adam_step", wrong_fused_adam)
    tracker = MlflowTracker(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        experiment="fast-paths",
        artifact_location=(tmp_path / "artifacts").as_uri(),
        run_name="fallback",
    )
    with tracker:
        train(
            train_tiny(tmp_path, sample_every=0, epochs=1, val_limit=1),
            callbacks=[MlflowCallback(tracker, system_metrics_interval=60.0)],
            progress=False,
        )
    tag = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(tracker.run_id)
    tag = tag.data.tags[fast_paths.FAST_PATHS_TAG]
    assert tag.startswith("off: fused_adam (weights differ by ")
    said = capsys.readouterr().out
    assert said.count("fast path fused_adam is off for this run: weights differ by") == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_build_keeps_every_fast_path_compile_included(tmp_path):
    # On the device: the fused kernel, bf16 + channels_last, the penalty under autocast, fused
    # Adam, and the compiled model's loss against the eager one.
    config = train_tiny(tmp_path, device="cuda", adv_w=0.001, compile=True, sample_every=0)
    trainer = build_trainer(config)
    said = []
    kept, paths = self_test(trainer, batch(), log=said.append)
    assert said == [] and paths.off == {} and kept is trainer
    assert paths.on == ["fused_search", "amp", "gp_autocast", "fused_adam", "compile"]
