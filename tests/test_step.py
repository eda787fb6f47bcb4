"""The training step (ttsr/train/step.py, built by ttsr/train/trainer.py), and the proof that the
benchmark (`benchmarks/`) times the step `ttsr.train` runs: for one `TrainConfig`, the benchmark's
builder and the training run's builder give the same modules, dtypes, memory format, compile state,
optimisers and loss values, and the benchmark's per-batch code gives the loop's losses.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from test_train import tiny as train_tiny
from torch.optim.optimizer import register_optimizer_step_post_hook

from benchmarks.configs import reference_config
from benchmarks.timing import LoopSteps, build
from ttsr import names
from ttsr.config import TrainConfig
from ttsr.train.loop import train
from ttsr.train.setup import start_run
from ttsr.train.step import D_BETAS, StepLosses
from ttsr.train.trainer import NAN_CHECK_STEPS, Trainer

ALL_LOSSES = {"per_w": 0.01, "tpl_w": 0.01, "adv_w": 0.001}
pytestmark = pytest.mark.filterwarnings("ignore:VGG19 ImageNet weights not found")


@pytest.fixture(autouse=True)
def one_thread():
    # Two OpenMP threads on a shared 2-core machine spin against each other (10x slower convs).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=["cpu", "cuda"])
def device(request) -> str:
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return request.param


@pytest.fixture(autouse=True)
def no_imagenet_vgg(monkeypatch, tmp_path):
    """Training looks for ImageNet VGG19 weights, the benchmark never does; with none found
    both draw the same random features from the seed. Make sure none is found here."""
    monkeypatch.delenv("TTSR_VGG19_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def tiny(tmp_path, **changes: Any) -> TrainConfig:
    """test_train's tiny config without sample grids (nothing here looks at them)."""
    return train_tiny(tmp_path, **{"sample_every": 0, **changes})


def _optimizer(opt: torch.optim.Optimizer | None) -> Any:
    if opt is None:
        return None
    groups = [
        (len(g["params"]), g["lr"], g["betas"], g["eps"], g["fused"], g["foreach"])
        for g in opt.param_groups
    ]
    return type(opt), groups


def _module(module: torch.nn.Module | None) -> Any:
    if module is None:
        return None
    params = [
        (name, p.dtype, tuple(p.shape), p.requires_grad, p.is_contiguous(), p.device.type)
        for name, p in module.named_parameters()
    ]
    return type(module), str(module), params


def _compiled(module: torch.nn.Module) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None  # nn.Module.compile()


def anatomy(trainer: Trainer) -> dict[str, Any]:
    """Everything about a trainer that decides what and how its step computes."""
    model = trainer.model
    return {
        "device": trainer.device,
        "amp_dtype": trainer.amp_dtype,
        "memory_format": trainer.memory_format,
        "check_every": trainer.check_every,
        "model": _module(model),
        "compiled": (_compiled(model.MainNet), _compiled(model.LTE)),
        "search": (
            model.SearchTransfer.chunk,
            model.SearchTransfer.dtype,
            model.SearchTransfer.method,
        ),
        "checkpoint_activations": model.MainNet.checkpoint_activations,
        "perceptual": _module(trainer.perceptual),
        "discriminator": _module(trainer.discriminator),
        "distance": _module(trainer.distance),
        "optimizer": _optimizer(trainer.optimizer),
        "d_optimizer": _optimizer(trainer.d_optimizer),
        "scheduler": (type(trainer.scheduler), trainer.scheduler.state_dict()),
        "weights": trainer.step.weights,
        "step": (
            trainer.step.device_type,
            trainer.step.amp_dtype,
            trainer.step.scaler.is_enabled(),
        ),
    }


def _floats(losses: StepLosses) -> dict[str, float]:
    out = {k: float(v) for k, v in losses.generator.items()}
    out.update({f"critic_{i}": float(v) for i, v in enumerate(losses.critic)})
    return out


@pytest.mark.parametrize(
    "changes",
    [
        ALL_LOSSES,
        {**ALL_LOSSES, "compile": True, "log_every_steps": 3},
        {"checkpoint_activations": True, "search_method": "chunked"},
    ],
    ids=str,
)
def test_benchmark_and_training_build_the_same_trainer(tmp_path, changes, device, monkeypatch):
    # What is compared is how the trainer is built, not what a compiler makes of it: the
    # compile self-test traces with dynamo's eager backend (inductor's C++ build: ~35 s here).
    monkeypatch.setenv("TTSR_COMPILE_BACKEND", "eager")
    config = tiny(tmp_path, **changes, device=device)
    trained = start_run(config).trainer  # what `ttsr.train` steps
    timed = build(config)  # what `benchmarks.train_step` times
    assert anatomy(timed) == anatomy(trained)
    assert anatomy(timed)["compiled"] == (config.compile, config.compile)
    a, b = trained.model.state_dict(), timed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The comparison can fail: another config is another trainer.
    assert anatomy(build(reference_config(config))) != anatomy(trained)
    assert anatomy(build(config.replace(compile=not config.compile))) != anatomy(trained)
    flipped = config.replace(checkpoint_activations=not config.checkpoint_activations)
    assert anatomy(build(flipped)) != anatomy(trained)


def test_benchmark_and_training_steps_give_the_same_losses(tmp_path, device):
    config = tiny(tmp_path, **ALL_LOSSES, device=device)
    run = start_run(config)
    timed = build(config)
    batch = next(iter(run.batches(1)))  # a batch of the training loader
    losses = []
    for trainer in (run.trainer, timed):
        torch.manual_seed(1)  # the gradient penalty draws from the global RNG
        losses.append([_floats(trainer.train_step(batch)) for _ in range(2)])
    if device == "cpu":
        assert losses[0] == losses[1]  # equal, not close: the same computation
    else:  # cuDNN autotuning may pick other (bf16) kernels in the second trainer
        for a, b in zip(losses[0], losses[1], strict=True):
            assert a.keys() == b.keys()
            assert all(b[k] == pytest.approx(a[k], rel=1e-2, abs=1e-3) for k in a), (a, b)
    assert set(losses[0][0]) == {
        names.LOSS_TOTAL,
        names.LOSS_REC,
        names.LOSS_PER,
        names.LOSS_TPL,
        names.LOSS_ADV,
        "critic_0",
        "critic_1",
    }


def test_the_benchmark_steps_like_the_loop(tmp_path):
    # No adversarial loss: the critic's gradient penalty draws from the global RNG, which the
    # loop's loaders and validation also draw from; everything else is deterministic.
    config = tiny(tmp_path, per_w=0.01, tpl_w=0.01, budget_steps=3, epochs=1, log_every_steps=2)
    result = train(config, progress=False)
    run = start_run(config.replace(out_dir=str(tmp_path / "again")))
    steps = LoopSteps(build(config), batch={})
    for batch in run.batches(1):
        steps.step(batch)
    epoch = result.history[1]
    assert steps.done == epoch[names.STEP] == 3
    means = steps.meter.means()
    for key in (names.LOSS_TOTAL, names.LOSS_REC, names.LOSS_PER, names.LOSS_TPL):
        assert means[key] == epoch[key], key
    assert steps.meter.check_every == 2 and steps.diverged is None


def test_check_every_follows_log_every_steps(tmp_path):
    # The loop and the benchmark both read `Trainer.check_every` (one definition).
    for every in (0, 3):
        run = start_run(tiny(tmp_path, log_every_steps=every))
        assert run.trainer.check_every == (every or 1)  # CPU: every step unless asked
    assert NAN_CHECK_STEPS == 50


class StepCounter:
    """Optimiser steps per optimiser kind (the critic's Adam has the reference's D_BETAS)."""

    def __init__(self) -> None:
        self.generator = self.critic = 0

    def __call__(self, optimizer, args, kwargs) -> None:
        if optimizer.defaults["betas"] == D_BETAS:
            self.critic += 1
        else:
            self.generator += 1


@pytest.fixture
def counter():
    counter = StepCounter()
    handle = register_optimizer_step_post_hook(counter)
    yield counter
    handle.remove()


def test_zero_weight_losses_are_never_built(tmp_path, counter):
    trainer = build(tiny(tmp_path))
    assert trainer.perceptual is trainer.discriminator is trainer.d_optimizer is None
    batch = next(iter(start_run(trainer.config).batches(1)))
    losses = trainer.train_step(batch)
    assert set(losses.generator) == {names.LOSS_REC, names.LOSS_TOTAL} and losses.critic == []
    assert (counter.generator, counter.critic) == (1, 0)


def test_gan_k_critic_steps_then_one_generator_step(tmp_path, counter):
    trainer = build(tiny(tmp_path, **ALL_LOSSES, gan_k=3))
    batch = next(iter(start_run(trainer.config).batches(1)))
    losses = trainer.train_step(batch)
    assert len(losses.critic) == 3 and len(losses.generator) == 5
    assert (counter.generator, counter.critic) == (1, 3)
    # A warm-up step is reconstruction only: no other term, no critic update.
    losses = trainer.train_step(batch, init=True)
    assert set(losses.generator) == {names.LOSS_REC, names.LOSS_TOTAL} and losses.critic == []
    assert (counter.generator, counter.critic) == (2, 3)
    total = losses.generator[names.LOSS_TOTAL]
    assert total.dtype == torch.float32 and not total.requires_grad


def test_a_compiled_trainer_validates_eager(tmp_path, monkeypatch):
    # Validation's no-grad graph and its partial last batches would each cost a compile.
    from torch._dynamo.utils import counters

    # Dynamo traces (and counts frames) whatever the backend: its eager one spares the run
    # start's compile self-test inductor's C++ build (~40 s here), which is not under test.
    monkeypatch.setenv("TTSR_COMPILE_BACKEND", "eager")

    trainer = build(tiny(tmp_path, compile=True))
    run = start_run(trainer.config)
    _, batch = next(run.evaluator.batches(trainer.config.ref_mode))
    torch._dynamo.reset()
    counters.clear()
    sr = trainer.infer(batch)
    assert sr.shape == batch["HR"].shape
    assert sum(counters["frames"].values()) == 0, dict(counters["frames"])  # nothing traced
