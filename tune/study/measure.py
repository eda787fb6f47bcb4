"""``--dry-run --measure``: the figures for the plan's estimate timed on this machine's GPU.

Each distinct trial config of the study (and its warm start) is built by the training builder
and stepped by the loop's per-batch code for a few steps (``benchmarks.timing.run_case``: the
benchmark's own timing and CUDA peak memory), once training and once validation's forward, so
the estimate uses the optimised path's real speed on this GPU instead of the reference code's
H200 table. CUDA only (``tune/study/plan.py`` refuses ``--measure`` without it).
"""

from __future__ import annotations

import time

from ttsr.config import TrainConfig
from tune.study.estimate import Figure, FigureSet, loss_kind, trial_kinds
from tune.study.preflight import PreflightError
from tune.study.studies import Study

WARMUP_STEPS = 2  # untimed (cuDNN autotune, allocator warm-up)
TIMED_STEPS = 5


def measure_figures(
    study: Study, *, warmup: int = WARMUP_STEPS, steps: int = TIMED_STEPS
) -> FigureSet:
    """A figure set of this study's trial configs, measured here; the set is named after the
    GPU and today's date."""
    import torch

    configs = [c for c, _, _ in trial_kinds(study)[0]]
    if study.pretrain is not None:
        configs.append(TrainConfig.from_dict(study.pretrain))
    rows: dict[tuple[int, int, str], Figure] = {}
    for config in configs:
        kind = loss_kind(config)
        for losses in (kind, "infer") if kind == "rec" else ("rec", kind, "infer"):
            key = (config.size, config.batch_size, losses)
            if key not in rows:
                rows[key] = _measure(config, losses, warmup=warmup, steps=steps)
    device = torch.cuda.get_device_name()
    first = configs[0]
    return FigureSet(
        name=f"measured here ({warmup} + {steps} steps per config)",
        code="optimised",
        device=device,
        device_type="cuda",
        date=time.strftime("%Y-%m-%d"),
        n_feats=first.n_feats,
        num_res_blocks=first.num_res_blocks,
        rows=tuple(rows.values()),
        source="timed on this machine (--measure)",
    )


def _measure(config: TrainConfig, losses: str, *, warmup: int, steps: int) -> Figure:
    """One (size, batch, losses) of ``config`` on CUDA: images/s and peak GiB."""
    from benchmarks.configs import ALL_LOSS_WEIGHTS, Case
    from benchmarks.timing import run_case

    weights = {"per_w": 0.0, "tpl_w": 0.0, "adv_w": 0.0} if losses == "rec" else {}
    if losses == "all" and loss_kind(config) == "rec":
        weights = ALL_LOSS_WEIGHTS
    cuda = config.replace(device="cuda", data=None, init_checkpoint=None, **weights)
    name = f"{losses}-{config.size}-b{config.batch_size}"
    case = Case(name, config.size, config.batch_size, losses, warmup, steps)
    result = run_case(case, cuda)
    if result["status"] != "ok":
        raise PreflightError(
            f"--measure: {name} failed on this GPU ({result['status']}: "
            f"{result.get('error', '')[:120]}); a trial of it cannot run here"
        )
    peak = result.get("peak_mib")
    return Figure(config.size, config.batch_size, losses, result["img_s"], peak and peak / 1024)
