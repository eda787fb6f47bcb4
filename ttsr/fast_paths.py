"""Fast paths prove themselves on the device before a run trusts them.

`self_test(trainer, batch)` runs right after `build_trainer`, at the run's real image sizes on a
batch of one, and compares each fast path the config switches on with the plain computation:

- fused_search: the fused Triton kernel vs the chunked PyTorch search (scores within
  `SEARCH_ATOL`; an index may differ only where the two picks' scores tie within it). This is
  also where the kernel compiles and autotunes, instead of inside the first training step.
- amp: the bf16 (+ channels_last) forward vs a fp32, contiguous copy of the model (PSNR between
  the two outputs >= `AMP_MIN_PSNR_DB`).
- gp_autocast: the WGAN-GP penalty under bf16 autocast vs fp32 (relative difference
  <= `GP_RTOL`).
- fused_adam: fused vs plain Adam, `ADAM_STEPS` steps on copies of some parameters
  (max difference <= `ADAM_ATOL`).
- compile: the compiled vs eager model's L1 loss on the batch (relative difference
  <= `COMPILE_RTOL`); the compile itself is the one the first step would do anyway.

A path that raises or disagrees is switched off for the run (the trainer is rebuilt without it,
or the step told so), printed once, and recorded in `FastPaths.tag()`, which the run puts on its
MLflow run as the `fast_paths` tag ("on: fused_adam; off: fused_search (error: ...)").
The global RNG state is left untouched, so the same seed still gives the same run.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim.adam import adam as adam_step

from ttsr.errors import first_line
from ttsr.metrics import psnr
from ttsr.search import choose_method, relevance_search
from ttsr.train.losses import gradient_penalty

SEARCH_ATOL = 2e-2  # bf16 block matmuls round scores to ~3 significant digits; fp32/tf32 far less
AMP_MIN_PSNR_DB = 30.0  # bf16 vs fp32 SR output of the same weights (random init: ~40-50 dB)
GP_RTOL = 5e-2  # the penalty is a squared norm of a gradient computed in bf16
ADAM_STEPS = 3
ADAM_ATOL = 1e-6
COMPILE_RTOL = 1e-2
SEARCH_CHANNELS = 256  # level-3 features of the LTE
FAST_PATHS_TAG = "fast_paths"  # the MLflow run tag
TAG_LIMIT = 250  # MLflow tags are short strings: reasons are cut to fit


@dataclass
class FastPaths:
    """Which fast paths this run uses (`on`) and which fell back, with the reason (`off`)."""

    on: list[str] = field(default_factory=list)
    off: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0  # the whole self-test, fallbacks (rebuilt trainers) included
    check_seconds: dict[str, float] = field(default_factory=dict)  # each comparison

    def tag(self) -> str:
        parts = []
        if self.on:
            parts.append("on: " + ", ".join(self.on))
        if self.off:
            parts.append("off: " + ", ".join(f"{k} ({v})" for k, v in self.off.items()))
        text = "; ".join(parts) or "none"
        return text if len(text) <= TAG_LIMIT else text[: TAG_LIMIT - 1] + "…"


@dataclass(frozen=True)
class Check:
    """One fast path: whether the trainer uses it, how to compare it, how to switch it off.

    compare(trainer, batch) returns None when the fast path agrees, else why not (a short
    string); an exception counts as a failure. fallback(trainer) returns the trainer without it.
    """

    name: str
    applies: Callable
    compare: Callable
    fallback: Callable


def _rebuilt(trainer, **changes):
    """The trainer built again from its config with ``changes`` (same seed, same weights)."""
    from ttsr.train.trainer import build_trainer

    rebuilt = build_trainer(trainer.config.replace(**changes))
    rebuilt.step.gp_autocast = trainer.step.gp_autocast  # a fallback that is no config field
    return rebuilt


def _search_applies(trainer) -> bool:
    config = trainer.config
    return choose_method(config.search_method, config.search_chunk, trainer.device) == "fused"


def _search_compare(trainer, batch) -> str | None:
    """Random level-3 features at the run's grid sizes (LR size; reference size / 4)."""
    device = trainer.device
    lr, ref = batch["LR"], batch["Ref"]
    g = torch.Generator().manual_seed(0)
    query = torch.randn(1, SEARCH_CHANNELS, *lr.shape[-2:], generator=g).to(device)
    key = torch.randn(1, SEARCH_CHANNELS, ref.shape[-2] // 4, ref.shape[-1] // 4, generator=g)
    key = key.to(device)
    dtype = torch.bfloat16 if trainer.config.search_dtype == "bf16" else None
    best, index = relevance_search(query, key, method="fused", dtype=dtype)
    best_ref, index_ref = relevance_search(query, key, method="chunked", dtype=dtype)
    error = (best - best_ref).abs().max().item()
    if not error <= SEARCH_ATOL:
        return f"scores differ by {error:.3g} > {SEARCH_ATOL}"
    # Where the indices differ, the two picks must score the same (a near-tie).
    q = F.normalize(F.unfold(query.float(), 3, padding=1), dim=1)  # (1, D, HW)
    k = F.normalize(F.unfold(key.float(), 3, padding=1), dim=1)  # (1, D, HrWr)
    at = [(k[0][:, i] * q[0]).sum(0) for i in (index[0], index_ref[0])]
    gap = (at[0] - at[1]).abs().max().item()
    if not gap <= SEARCH_ATOL:
        return f"{int((index != index_ref).sum())} indices are not near-ties (gap {gap:.3g})"
    return None


def _amp_applies(trainer) -> bool:
    return trainer.amp_dtype is not None or trainer.memory_format == torch.channels_last


@torch.no_grad()
def _amp_compare(trainer, batch) -> str | None:
    lr, lr_up, _, ref, ref_downup = trainer.inputs(batch)
    model = trainer.model
    plain = copy.deepcopy(model).float().to(memory_format=torch.contiguous_format)
    eager = torch.compiler.set_stance("force_eager") if trainer.config.compile else nullcontext()
    with eager:
        with trainer.autocast():
            fast = model(lr, lr_up, ref, ref_downup).sr.float()
        inputs = [x.float().contiguous() for x in (lr, lr_up, ref, ref_downup)]
        slow = plain(*inputs).sr.float()
    value = psnr(fast.clamp(-1, 1), slow.clamp(-1, 1)).min().item()
    if not value >= AMP_MIN_PSNR_DB:
        return f"PSNR vs fp32 {value:.1f} dB < {AMP_MIN_PSNR_DB:g}"
    return None


def _gp_applies(trainer) -> bool:
    step = trainer.step
    return (
        trainer.discriminator is not None and step.gp_autocast and step.amp_dtype == torch.bfloat16
    )


def _gp_compare(trainer, batch) -> str | None:
    d = trainer.discriminator
    _, _, hr, _, _ = trainer.inputs(batch)
    fake = hr.flip(-1).detach()
    values = []
    for enabled in (True, False):
        torch.manual_seed(0)  # the same interpolates (the caller restores the RNG)
        with torch.autocast(trainer.device.type, dtype=trainer.amp_dtype, enabled=enabled):
            values.append(gradient_penalty(d, hr, fake).float().item())
    d.zero_grad(set_to_none=True)
    fast, slow = values
    if not abs(fast - slow) <= GP_RTOL * max(abs(slow), 1e-3):
        return f"penalty {fast:.4g} vs fp32 {slow:.4g}"
    return None


def _gp_fallback(trainer):
    trainer.step.gp_autocast = False
    return trainer


def _adam_applies(trainer) -> bool:
    return bool(trainer.optimizer.defaults.get("fused"))


def _adam_compare(trainer, batch) -> str | None:
    """Through Adam's functional form (`torch.optim.adam.adam`, what `Adam.step` calls): no
    optimizer object, so no global optimizer-step hooks fire for these test steps."""
    params = [p.detach() for p in trainer.model.parameters() if p.requires_grad][:4]
    group = trainer.optimizer.param_groups[0]
    beta1, beta2 = group["betas"]
    results = []
    for fused in (True, False):
        copies = [p.clone() for p in params]
        moments = [torch.zeros_like(p) for p in copies], [torch.zeros_like(p) for p in copies]
        steps = [torch.zeros((), device=p.device) if fused else torch.tensor(0.0) for p in copies]
        g = torch.Generator().manual_seed(1)
        for _ in range(ADAM_STEPS):
            grads = [torch.randn(p.shape, generator=g).to(p.device, p.dtype) for p in copies]
            adam_step(
                copies,
                grads,
                *moments,
                [],
                steps,
                foreach=False,
                fused=fused,
                amsgrad=False,
                beta1=beta1,
                beta2=beta2,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=False,
            )
        results.append(copies)
    error = max((a - b).abs().max().item() for a, b in zip(*results, strict=True))
    if not error <= ADAM_ATOL:
        return f"weights differ by {error:.3g} > {ADAM_ATOL:g}"
    return None


def _compile_compare(trainer, batch) -> str | None:
    lr, lr_up, hr, ref, ref_downup = trainer.inputs(batch)
    losses = []
    for stance in ("default", "force_eager"):
        with torch.compiler.set_stance(stance), trainer.autocast():
            sr = trainer.model(lr, lr_up, ref, ref_downup).sr
            losses.append(F.l1_loss(sr.float(), hr.float()).item())
    fast, slow = losses
    if not abs(fast - slow) <= COMPILE_RTOL * max(abs(slow), 1e-6):
        return f"loss {fast:.5g} vs eager {slow:.5g}"
    return None


CHECKS = (
    Check(
        "fused_search",
        _search_applies,
        _search_compare,
        lambda t: _rebuilt(t, search_method="chunked"),
    ),
    Check("amp", _amp_applies, _amp_compare, lambda t: _rebuilt(t, amp="off", channels_last=False)),
    Check("gp_autocast", _gp_applies, _gp_compare, _gp_fallback),
    Check("fused_adam", _adam_applies, _adam_compare, lambda t: _rebuilt(t, fused_optim=False)),
    Check(
        "compile",
        lambda t: t.config.compile,
        _compile_compare,
        lambda t: _rebuilt(t, compile=False),
    ),
)


def self_test(trainer, batch: dict[str, Tensor], *, checks=CHECKS, log=print):
    """Run every applicable check; returns (the trainer to use, FastPaths).

    batch: loader items stacked (for `compile` the run's training batch shape; the others use
    its first item). A failing path is switched off and the remaining checks run on the trainer
    without it; each fallback is printed once through `log`.
    """
    start = time.perf_counter()
    paths = FastPaths()
    one = {k: v[:1] for k, v in batch.items()}
    devices = [trainer.device] if trainer.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        for check in checks:
            if not check.applies(trainer):
                continue
            began = time.perf_counter()
            try:
                reason = check.compare(trainer, batch if check.name == "compile" else one)
            except Exception as error:  # noqa: BLE001 - any failure turns the path off
                reason = f"error: {type(error).__name__}: {first_line(error, 100)}"
            if trainer.device.type == "cuda":
                torch.cuda.synchronize(trainer.device)
            paths.check_seconds[check.name] = time.perf_counter() - began
            if reason is None:
                paths.on.append(check.name)
                continue
            paths.off[check.name] = reason
            log(f"fast path {check.name} is off for this run: {reason}")
            trainer = check.fallback(trainer)
    paths.seconds = time.perf_counter() - start
    return trainer, paths
