"""How long a GPU study will take and how much GPU memory each trial needs, printed with the
plan (``tune/run.py --dry-run``) before a cluster is spent on it.

Per trial (an upper bound: early stopping, ASHA and divergence only shorten it): its training
images at the training images/s of its size and losses, plus its validation images at
validation's images/s; peak memory = GiB per image × batch. The study: the trials' GPU time ÷ the
GPUs it keeps busy, never less than its longest trial, after the warm start (alone, first).

The figures are a set from ``tune/figures.json`` (the reference code's H200 figures until a
measured GPU set of the optimised path for the trial's model is added) or a set timed on this GPU
(``--measure``: a few steps of each trial config through ``benchmarks.timing.run_case``). Sizes,
losses and validation not in the set are derived from it by pixels (`per_image`); every such step
is named in the output.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttsr.config import TrainConfig
from ttsr.train.batches import StepSchedule
from tune.execution.cluster import Cluster
from tune.reporting.formatting import duration
from tune.study.preflight import PreflightError
from tune.study.studies import Study

FIGURES = Path(__file__).resolve().parents[1] / "figures.json"  # package data
SEED_DATA = (56_000, 14_000)  # train, test images
SEED_DATA_TEXT = "the seed document's FFHQ (70,000 images, 80/20 train/test split)"
OTHER_LOSSES = ("per_w", "tpl_w", "adv_w")


@dataclass(frozen=True)
class Figure:
    size: int
    batch: int
    losses: str  # "rec" | "all" (training) or "infer" (validation's forward)
    img_s: float
    peak_gib: float | None = None


@dataclass(frozen=True)
class FigureSet:
    name: str
    code: str  # "reference" (researchmm/TTSR) or "optimised" (this project's defaults)
    device: str
    device_type: str  # "cuda" | "cpu"
    date: str
    n_feats: int
    num_res_blocks: str
    rows: tuple[Figure, ...]
    source: str = f"tune/{FIGURES.name}"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FigureSet:
        rows = [Figure(r["size"], r["batch"], r["losses"], r["img_s"], r.get("peak_gib"))
                for r in d["train"]]  # fmt: skip
        rows += [Figure(r["size"], r["batch"], "infer", r["img_s"]) for r in d.get("infer", ())]
        return cls(d["name"], d["code"], d["device"], d["device_type"], str(d["date"]),
                   int(d["n_feats"]), str(d["num_res_blocks"]), tuple(rows))  # fmt: skip


def load_figures(path: Path = FIGURES) -> list[FigureSet]:
    return [FigureSet.from_dict(s) for s in json.loads(Path(path).read_text())["sets"]]


def choose_figures(sets: Sequence[FigureSet], config: TrainConfig) -> tuple[FigureSet, str] | None:
    """The GPU figures for ``config``'s model: a measured set of the optimised path, else the
    reference code's. Returns (set, what it assumes about the optimised path), or None."""
    model = (config.n_feats, config.num_res_blocks)
    same = [s for s in sets if s.device_type == "cuda" and (s.n_feats, s.num_res_blocks) == model]
    for s in reversed(same):
        if s.code == "optimised":
            return s, "the optimised path's own figures (measured)"
    for s in reversed(same):
        if s.code == "reference":
            return s, (
                "the optimised path's speed-up over the reference code assumed 1 (no measured "
                "GPU figure of the optimised path for this model yet)"
            )
    return None


# ------------------------------------------------------------------------------------------------
def _linear(points: Sequence[tuple[float, float]], x: float) -> tuple[float, str]:
    """y at x: linear between the two neighbouring points, extrapolated from the nearest two
    outside them (proportional to x where that would go to zero or below), proportional to x
    with a single point. Returns (y, how)."""
    pts = sorted(points)
    exact = [y for px, y in pts if px == x]
    if exact:
        return exact[0], "table"
    if len(pts) == 1:
        return pts[0][1] * x / pts[0][0], "scaled by pixels"
    if pts[0][0] < x < pts[-1][0]:
        a, b = next((p, q) for p, q in zip(pts, pts[1:], strict=False) if p[0] < x < q[0])
        how = "interpolated by pixels"
    else:
        a, b = (pts[0], pts[1]) if x < pts[0][0] else (pts[-2], pts[-1])
        how = "extrapolated by pixels"
    y = a[1] + (b[1] - a[1]) * (x - a[0]) / (b[0] - a[0])
    if y <= 0:
        near = min((a, b), key=lambda p: abs(p[0] - x))
        y, how = near[1] * x / near[0], "scaled by pixels"
    return y, how


def per_image(
    rows: Sequence[Figure], kind: str, size: int, value: Callable[[Figure], float | None]
) -> tuple[float, str] | None:
    """``value`` per image (seconds, GiB) for ``kind`` at ``size``: the table's row, else the
    ``kind`` rows' curve over pixels; a kind other than rec with rows at other sizes only
    follows the rec curve times its mean ratio to it there. None: no rows to go on."""
    px = size * size

    def points(k: str) -> list[tuple[float, float]]:
        return [(f.size * f.size, v) for f in rows if f.losses == k and (v := value(f)) is not None]

    own, rec = points(kind), points("rec")
    exact = [v for p, v in own if p == px]
    if exact:
        return exact[0], "table"
    if not own:
        return None
    if kind == "rec" or not rec:
        return _linear(own, px)
    ratio = sum(v / _linear(rec, p)[0] for p, v in own) / len(own)
    base, how = _linear(rec, px)
    return base * ratio, f"rec {how} × {kind}/rec {ratio:.2f}"


def _seconds(f: Figure) -> float:
    return 1.0 / f.img_s


def _gib(f: Figure) -> float | None:
    return None if f.peak_gib is None else f.peak_gib / f.batch


def loss_kind(config: TrainConfig) -> str:
    return "all" if any(getattr(config, w) > 0 for w in OTHER_LOSSES) else "rec"


# ------------------------------------------------------------------------------------------------
def dataset_counts(data: str | None, size: int) -> tuple[int, int, str]:
    """(train, test) images at ``size``: the prepared folder's manifest when there is one,
    else the seed document's; and where they came from."""
    from ttsr.data.manifest import MANIFEST_NAME, read_manifest
    from ttsr.errors import DataError

    if data is None or "://" in data or not (Path(data) / MANIFEST_NAME).is_file():
        why = f"no {MANIFEST_NAME} readable here in {data}" if data else "no prepared data given"
        return (*SEED_DATA, f"{SEED_DATA_TEXT} ({why})")
    try:
        sizes = read_manifest(Path(data))["sizes"]
    except (DataError, KeyError) as e:
        return (*SEED_DATA, f"{SEED_DATA_TEXT} ({data}: {e})")
    if str(size) not in sizes:
        return (*SEED_DATA, f"{SEED_DATA_TEXT} ({data} has this size not prepared)")
    s = sizes[str(size)]
    return int(s["train"]), int(s["test"]), f"{data}/{MANIFEST_NAME}"


def _subset(n: int, fraction: float) -> int:
    """Items of a split after ``fraction`` (ttsr/data: the first ceil(f·n), at least 1)."""
    return max(1, math.ceil(fraction * n))


@dataclass(frozen=True)
class TrialEstimate:
    label: str
    count: int  # trials with this config
    train_images: int  # optimiser steps × batch, all epochs
    val_images: int  # every validation pass, every reference mode
    train_seconds: float
    val_seconds: float
    peak_gib: float | None
    how: str  # how the training figure was found (table, interpolated by pixels, ...)
    val_how: str  # ... and the validation figure
    data: str  # where the image counts came from
    size: int

    @property
    def seconds(self) -> float:
        return self.train_seconds + self.val_seconds


def trial_estimate(
    config: TrainConfig, rows: Sequence[Figure], *, label: str, count: int
) -> TrialEstimate | None:
    """One trial of ``config`` alone on one GPU; None when the figures cannot say."""
    train_n, test_n, data = dataset_counts(config.data, config.size)
    train_n = _subset(train_n, config.fraction)
    val_n = min(_subset(test_n, config.fraction), config.val_limit or test_n)
    schedule = StepSchedule(train_n, config.batch_size, config.epochs, config.step_budget)
    steps = schedule.round_end(config.epochs)
    kind = loss_kind(config)
    # the reconstruction-only epochs a config starts with (init_epochs) run at rec speed
    rec_epochs = config.epochs if kind == "rec" else min(config.init_epochs, config.epochs)
    rec_steps = steps * rec_epochs // config.epochs
    rec = per_image(rows, "rec", config.size, _seconds)
    train = per_image(rows, kind, config.size, _seconds)
    val = per_image(rows, "infer", config.size, _seconds)
    if rec is None or train is None or val is None:
        return None
    memory = per_image(rows, kind, config.size, _gib)
    val_images = (config.epochs + 1) * val_n * (1 + len(config.val_ref_modes))
    b = config.batch_size
    return TrialEstimate(
        label=label,
        count=count,
        train_images=steps * b,
        val_images=val_images,
        train_seconds=b * (rec_steps * rec[0] + (steps - rec_steps) * train[0]),
        val_seconds=val_images * val[0],
        peak_gib=None if memory is None else memory[0] * b,
        how=train[1],
        val_how=val[1],
        data=data,
        size=config.size,
    )


# ------------------------------------------------------------------------------------------------
def trial_kinds(study: Study) -> tuple[list[tuple[TrainConfig, int, str]], list[str]]:
    """((config, trials, label) per distinct trial config, assumptions): every grid point; a
    searched study's fixed config with each numeric searched value at its largest (slowest)."""
    per_point = study.num_samples * study.repeats
    slowest = {
        k: max(d.values)
        for k, d in study.search.items()
        if d.kind != "grid" and all(isinstance(v, int | float) for v in d.values)
    }
    assumed = []
    if slowest:
        given = ", ".join(f"{k} {v:g}" for k, v in slowest.items())
        assumed.append(f"searched values at their largest (the slowest trials): {given}")
    shown = [k for k in study.varied_keys if k not in ("size", "batch_size") and k not in slowest]
    out = []
    for values in study.trial_configs() if study.is_grid else [dict(study.config)]:
        config = TrainConfig.from_dict({**values, **slowest})
        extra = "".join(f", {k} {values[k]}" for k in shown if k in values)
        label = f"size {config.size}, batch {config.batch_size}, {loss_kind(config)}{extra}"
        out.append((config, per_point, label))
    return out, assumed


@dataclass(frozen=True)
class StudyEstimate:
    trials: tuple[TrialEstimate, ...]
    warm_start: TrialEstimate | None
    figures: FigureSet
    speedup: str  # what the figures assume about the optimised path
    gpus: float  # the GPUs planned for
    cluster: str  # where that number comes from
    gpus_per_trial: float
    slots: int  # trials at a time
    assumed: tuple[str, ...]

    @property
    def share(self) -> float:
        """The part of a GPU each trial has (trials sharing a GPU share its throughput: the
        reference measured no gain from packing trials)."""
        return min(self.gpus_per_trial, 1.0)

    @property
    def gpu_seconds(self) -> float:
        return sum(t.seconds * t.count for t in self.trials)

    @property
    def wall_seconds(self) -> float:
        longest = max(t.seconds for t in self.trials) / self.share
        warm = self.warm_start.seconds if self.warm_start else 0.0
        return warm + max(self.gpu_seconds / (self.slots * self.share), longest)

    def lines(self) -> list[str]:
        """The plan's estimate lines: per trial, the study's wall time, the assumptions."""
        warm = self.warm_start
        head = "estimate   per trial alone on one GPU, at most (early stopping only shortens it):"
        lines = [head, *(_trial_line(t) for t in self.trials)]
        if warm is not None:
            lines.append(_trial_line(warm) + " (once, before the trials)")
        before = f"warm start {duration(warm.seconds, coarse=True)} + " if warm else ""
        each = f" × {self.share:g} GPU each" if self.share < 1 else ""
        lines.append(
            f"wall time  ≈ {duration(self.wall_seconds, coarse=True)}: {before}"
            f"{sum(t.count for t in self.trials)} trials' {self.gpu_seconds / 3600:.1f} GPU-hours "
            f"÷ {self.slots} at a time{each}, on {self.cluster}"
        )
        f = self.figures
        figures = f"{f.code} code on {f.device} ({f.date}; set {f.name!r}), {f.source}"
        lines.append(f"assumed    figures: {figures}; {self.speedup}")
        sources: dict[str, list[str]] = {}
        for t in (*self.trials, *([warm] if warm else [])):
            sizes = sources.setdefault(t.data, [])
            sizes += [] if str(t.size) in sizes else [str(t.size)]
        counts = "; ".join(f"{', '.join(sizes)} px from {src}" for src, sizes in sources.items())
        notes = [
            f"image counts: {counts}; train = ceil(fraction × train split) per "
            "epoch (or the step budget × batch); validation = ceil(fraction × test split), at most "
            "val_limit, at epoch 0 and after every epoch, once per validation reference mode",
            "images/s as in the table whatever the batch size; peak memory = GiB per image × batch",
            "not counted: data loading, checkpoints, sample grids, trial start-up",
            *self.assumed,
        ]
        if any("pixels" in t.how or "pixels" in t.val_how for t in self.trials):
            notes.append(
                "sizes not in the table: seconds and GiB per image linear in pixels between the "
                "table's sizes, extrapolated from the nearest two beyond them"
            )
        if self.share < 1:
            notes.append("trials sharing a GPU share its throughput (no gain from packing)")
        lines += [f"  - {n}" for n in notes]
        return lines


def estimate_study(
    study: Study, cluster: Cluster, *, sets: Sequence[FigureSet] | None = None
) -> StudyEstimate | str:
    """The estimate for ``study`` on ``cluster`` (planned for the GPUs the study asks for when
    the cluster has none), or a line saying why there is none."""
    kinds, assumed = trial_kinds(study)
    sets = load_figures() if sets is None else sets
    chosen = choose_figures(sets, kinds[0][0])
    model = f"n_feats {kinds[0][0].n_feats}, blocks {kinds[0][0].num_res_blocks}"
    if chosen is None:
        return f"no GPU figures for this model ({model}) in {FIGURES.name}: --measure on a GPU"
    figures, speedup = chosen
    trials = [trial_estimate(c, figures.rows, label=label, count=n) for c, n, label in kinds]
    warm = None
    if study.pretrain is not None:
        warm = trial_estimate(
            TrainConfig.from_dict(study.pretrain), figures.rows, label="warm start", count=1
        )
    if any(t is None for t in trials) or (study.pretrain is not None and warm is None):
        return f"the figures of set {figures.name!r} do not cover these trials' losses"
    gpt = study.gpus_per_trial
    if cluster.gpus > 0:
        nodes = sum(1 for n in cluster.nodes if n.get("Alive") and n["Resources"].get("GPU"))
        gpus, where = cluster.gpus, f"the cluster's {cluster.gpus:g} GPU(s) on {nodes} node(s)"
    else:
        gpus = study.max_concurrent * gpt
        where = (
            f"{gpus:g} GPU(s) = max_concurrent {study.max_concurrent} × {gpt:g} GPU per trial "
            "(the cluster at hand has no GPU)"
        )
    slots = max(1, min(study.max_concurrent, study.num_trials(), int(gpus / gpt + 1e-9)))
    return StudyEstimate(
        trials=tuple(trials),
        warm_start=warm,
        figures=figures,
        speedup=speedup,
        gpus=gpus,
        cluster=where,
        gpus_per_trial=gpt,
        slots=slots,
        assumed=tuple(assumed),
    )


# ------------------------------------------------------------------------------------------------
def _trial_line(t: TrialEstimate) -> str:
    train_rate = t.train_images / t.train_seconds
    val_rate = t.val_images / t.val_seconds
    peak = "peak memory unknown" if t.peak_gib is None else f"peak {t.peak_gib:.1f} GiB"
    times = (
        f"{t.count} trial(s) × {duration(t.seconds, coarse=True)}"
        if t.count > 1
        else duration(t.seconds, coarse=True)
    )
    return (
        f"  {t.label}: {times} = {t.train_images:,} train img at {train_rate:.3g} img/s "
        f"({t.how}) + {t.val_images:,} val img at {val_rate:.3g} img/s ({t.val_how}); {peak}"
    )


# ------------------------------------------------------------------------------------------------
WARMUP_STEPS = 2  # untimed (cuDNN autotune, allocator warm-up)
TIMED_STEPS = 5


def measure_figures(
    study: Study, *, warmup: int = WARMUP_STEPS, steps: int = TIMED_STEPS
) -> FigureSet:
    """``--dry-run --measure``: each distinct trial config (and the warm start) built by the
    training builder and stepped by the loop's per-batch code (``benchmarks.timing.run_case``),
    once training and once validation's forward, on this CUDA GPU."""
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
