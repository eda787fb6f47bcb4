"""What the training-step benchmark runs: cases, presets, and the `TrainConfig` of each path.

A case becomes the config a study would run for it (`study_config`: every speed knob is the
default a trial gets); the reference path is that config with the speed knobs set the way
researchmm/TTSR runs (`reference_config`); the ablation goes from the one to the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ttsr.config import TrainConfig

LOSSES = ("rec", "all", "infer")  # reconstruction only, all four losses, inference (validation)
# The reference's full TTSR recipe (rec_w stays 1).
ALL_LOSS_WEIGHTS = {"per_w": 1e-2, "tpl_w": 1e-2, "adv_w": 1e-3}
# How researchmm/TTSR runs: fp32, dense search and unfold/fold transfer, eager, contiguous
# tensors, plain Adam, PyTorch's default kernel selection, the loss read every step.
REFERENCE_SPEED = {
    "search_chunk": 0,
    "search_dtype": "fp32",
    "search_method": "auto",  # with search_chunk 0: the dense search
    "amp": "off",
    "channels_last": False,
    "fused_optim": False,
    "fast_kernels": False,
    "compile": False,
    "checkpoint_activations": False,
    "log_every_steps": 1,
}
# The TrainConfig fields that change how a step is computed, never what it computes.
SPEED_FIELDS = tuple(REFERENCE_SPEED)
# Cumulative steps from the reference path to the study config, i.e. TrainConfig's defaults
# (labels as printed; the CUDA-only knobs change nothing on the CPU, and amp auto is fp32 there).
ABLATION: tuple[tuple[str, dict[str, Any]], ...] = (
    ("reference (dense, fp32, eager)", {}),
    ("+ memory-bounded search", {"search_chunk": None}),  # fused kernel on CUDA, else chunked
    ("+ no host sync per step", {"log_every_steps": 0}),
    ("+ fast kernels (cuDNN autotune, TF32)", {"fast_kernels": True}),
    ("+ channels_last", {"channels_last": True}),
    ("+ autocast (bf16 on CUDA)", {"amp": "auto"}),
    ("+ fused Adam (= default)", {"fused_optim": True}),
)
# What is not a default, measured one at a time on top of the study config (`--options`).
OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "chunked-search": ("default, chunked search", {"search_method": "chunked"}),
    "bf16-search": ("default + bf16 search matmuls", {"search_dtype": "bf16"}),
    "checkpoint": ("default + checkpoint_activations", {"checkpoint_activations": True}),
    "compile": ("default + torch.compile", {"compile": True}),
}


@dataclass(frozen=True)
class Case:
    name: str
    size: int  # HR / reference side; LR is size // 4
    batch: int
    losses: str  # one of LOSSES
    warmup: int
    steps: int
    reference: bool = True  # False: skip the reference path (known not to fit, or a duplicate)
    changes: tuple[tuple[str, Any], ...] = ()  # TrainConfig fields of the study config to change


@dataclass(frozen=True)
class Preset:
    n_feats: int
    blocks: str
    cases: tuple[Case, ...]


CHECKPOINTED = (("checkpoint_activations", True),)

PRESETS = {
    # 2 shared CPU cores: a narrow, shallow model so the whole preset runs in a few minutes.
    "cpu": Preset(
        n_feats=16,
        blocks="4+4+2+1",
        cases=(
            Case("rec-64-b2", 64, 2, "rec", 1, 3),
            Case("all-64-b2", 64, 2, "all", 1, 2),
            Case("rec-96-b2", 96, 2, "rec", 1, 3),
            Case("rec-128-b1", 128, 1, "rec", 1, 3),
        ),
    ),
    # The CPU target (>= 1.5x at 160 px, batch 1): the full model, ~1 min per run.
    "cpu-full": Preset(
        n_feats=64,
        blocks="16+16+8+4",
        cases=(
            Case("rec-160-b1", 160, 1, "rec", 1, 3),
            Case("all-160-b1", 160, 1, "all", 1, 2),
        ),
    ),
    # For tests and smoke checks: seconds.
    "quick": Preset(
        n_feats=8,
        blocks="1+1+1+1",
        cases=(
            Case("rec-32-b2", 32, 2, "rec", 1, 1),
            Case("all-32-b2", 32, 2, "all", 1, 1),
        ),
    ),
    # The sizes of the reference figures and targets (docs/BENCHMARKS.md), full model.
    "gpu": Preset(
        n_feats=64,
        blocks="16+16+8+4",
        cases=(
            Case("rec-160-b8", 160, 8, "rec", 5, 20),
            Case("all-160-b9", 160, 9, "all", 3, 10),
            Case("infer-160-b8", 160, 8, "infer", 3, 20),
            Case("rec-256-b8", 256, 8, "rec", 2, 8),
            Case("rec-384-b8", 384, 8, "rec", 2, 5),
            Case("rec-512-b8", 512, 8, "rec", 2, 5),
            # The memory targets with activation checkpointing (its reference = the case above).
            Case("rec-512-b8-ckpt", 512, 8, "rec", 2, 5, False, CHECKPOINTED),
            Case("rec-1024-b1", 1024, 1, "rec", 1, 3),
            # Dense relevance alone would be 8 x 16 GiB (65536^2 fp32 per image): skip (a).
            Case("rec-1024-b8", 1024, 8, "rec", 1, 3, reference=False),
            Case("rec-1024-b8-ckpt", 1024, 8, "rec", 1, 3, False, CHECKPOINTED),
        ),
    ),
}


def study_config(
    case: Case, *, device: str, n_feats: int, blocks: str, compile: bool = False
) -> TrainConfig:
    """The config a study would run for ``case``: TrainConfig's defaults plus the case (size,
    batch, model, loss weights, device, its `Case.changes`), and ``compile`` when asked for."""
    weights = ALL_LOSS_WEIGHTS if case.losses == "all" else {}
    values = dict(
        size=case.size,
        batch_size=case.batch,
        n_feats=n_feats,
        num_res_blocks=blocks,
        device=device,
        compile=compile,
        **weights,
    )
    return TrainConfig(**{**values, **dict(case.changes)})  # the case's changes win


def reference_config(config: TrainConfig) -> TrainConfig:
    """``config`` computed the way the reference code computes it (`REFERENCE_SPEED`)."""
    return config.replace(**REFERENCE_SPEED)


def ablation_configs(config: TrainConfig) -> list[tuple[str, TrainConfig]]:
    """(label, config) from `reference_config(config)`, one `ABLATION` change at a time; the
    last is ``config`` itself when its speed fields are the defaults."""
    out: list[tuple[str, TrainConfig]] = []
    current = reference_config(config)
    for label, changes in ABLATION:
        current = current.replace(**changes)
        out.append((label, current))
    return out


def option_configs(config: TrainConfig, names: tuple[str, ...]) -> list[tuple[str, TrainConfig]]:
    """(label, config) for each named `OPTIONS` entry, each applied alone to ``config``."""
    return [(OPTIONS[n][0], config.replace(**OPTIONS[n][1])) for n in names]


def speed_settings(config: TrainConfig) -> dict[str, Any]:
    """The `SPEED_FIELDS` of ``config`` (what the two paths differ in)."""
    return {name: getattr(config, name) for name in SPEED_FIELDS}


def describe(config: TrainConfig) -> str:
    return " ".join(f"{k}={v}" for k, v in speed_settings(config).items())
