"""Printing the benchmark's tables, and the GPU targets checked against what was measured."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import torch

from benchmarks.configs import Case

GIB = 2**30
# Reference-code figures on one H200 (docs/BENCHMARKS.md): case -> (img/s, peak GiB or None).
REFERENCE_CODE_H200 = {
    "rec-160-b8": (113.0, 4.8),
    "all-160-b9": (55.9, 6.5),
    "infer-160-b8": (402.0, None),
    "rec-256-b8": (50.0, 11.9),
    "rec-384-b8": (18.5, 26.6),
    "rec-512-b8": (8.1, 47.0),
    "rec-1024-b1": (0.75, 32.0),
}
TARGET_IMG_S = {"rec-160-b8": 600.0, "all-160-b9": 280.0, "rec-512-b8": 60.0}
TARGET_PEAK_GIB = {"rec-512-b8": 16.0, "rec-1024-b8": 80e9 / GIB}  # 80 GB = 74.5 GiB
# The same targets for the cases with activation checkpointing: the target is met by either.
CHECKPOINTED_CASES = {"rec-512-b8": "rec-512-b8-ckpt", "rec-1024-b8": "rec-1024-b8-ckpt"}
TARGET_PACKED_IMG_S = 1200.0
TARGET_EPOCH_S = 20.0
EPOCH_TRAIN_IMAGES, EPOCH_VAL_IMAGES = 8000, 2000


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _mem(r: dict[str, Any]) -> str:
    if r.get("status") != "ok" or r.get("peak_mib") is None:
        return "-"
    mib = r["peak_mib"]
    return f"{mib / 1024:.2f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a <= 0:
        return None
    return b / a


def _ok(r: dict[str, Any] | None) -> bool:
    return r is not None and r["status"] == "ok"


def print_comparison(cases: list[Case], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The main table; returns one row per case with the ratios b/a (wall time, memory, and
    CPU time per step: the robust one on a shared CPU)."""
    by = {(r["case"], r["path"]): r for r in results}
    header = (
        f"{'case':<14}{'path':<11}{'step ms':>10}{'img/s':>10}{'cpu ms':>10}{'peak mem':>12}"
        f"{'speed b/a':>11}{'cpu b/a':>9}{'mem b/a':>9}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for case in cases:
        a, b = by.get((case.name, "reference")), by.get((case.name, "optimised"))
        for label, r in (("reference", a), ("optimised", b)):
            if r is None:
                continue
            if r["status"] != "ok":
                print(f"{case.name:<14}{label:<11}  {r['status']}")
                continue
            line = f"{case.name:<14}{label:<11}{r['step_ms']:>10.1f}{r['img_s']:>10.2f}"
            line += f"{fmt(r.get('cpu_ms'), '.1f'):>10}{_mem(r):>12}"
            if label == "optimised" and _ok(a):
                speed = _ratio(a["img_s"], r["img_s"])
                cpu = _ratio(r.get("cpu_ms"), a.get("cpu_ms"))  # time ratio a/b = speed b/a
                mem = _ratio(a.get("peak_mib"), r.get("peak_mib"))
                line += f"{_times(speed):>11}{_times(cpu):>9}{_times(mem):>9}"
            print(line)
        both = _ok(a) and _ok(b)
        rows.append(
            {
                "case": case.name,
                "speed_ratio": _ratio(a["img_s"], b["img_s"]) if both else None,
                "cpu_ratio": _ratio(b.get("cpu_ms"), a.get("cpu_ms")) if both else None,
                "memory_ratio": _ratio(a.get("peak_mib"), b.get("peak_mib")) if both else None,
            }
        )
    return rows


def print_ablation(
    case: Case, results: list[dict[str, Any]], options: list[dict[str, Any]] = ()
) -> None:
    """The cumulative rows (vs the previous row and the first), then the `--options` rows (each
    vs the last cumulative row, the default)."""
    print(f"\nablation on {case.name} (cumulative; vs previous step and vs the first row)")
    header = f"{'step':<34}{'step ms':>10}{'img/s':>10}{'peak mem':>12}{'vs prev':>9}{'vs ref':>8}"
    print(header)
    print("-" * len(header))
    first = prev = None
    for r in results:
        if not _ok(r):
            print(f"{r['path']:<34}  {r['status']}")
            continue
        first = first or r
        print(_ablation_row(r, prev, first))
        prev = r
    if options:
        print(f"{'options, each alone on the default':<34}{'':>40}{'vs default':>10}")
        for r in options:
            print(_ablation_row(r, prev, None) if _ok(r) else f"{r['path']:<34}  {r['status']}")


def _ablation_row(r: dict[str, Any], prev: dict | None, first: dict | None) -> str:
    vs_prev = _ratio(prev["img_s"], r["img_s"]) if prev else None
    vs_first = _ratio(first["img_s"], r["img_s"]) if first else None
    warm = f" (warm-up {r['warmup_s']:.0f} s)" if r.get("warmup_s", 0) >= 10 else ""
    return (
        f"{r['path']:<34}{r['step_ms']:>10.1f}{r['img_s']:>10.2f}{_mem(r):>12}"
        f"{_times(vs_prev):>9}{_times(vs_first) if first else '':>8}{warm}"
    )


def target_checks(
    results: list[dict[str, Any]], packed: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The GPU targets against what was measured on the optimised path (and its checkpointed
    variants, `CHECKPOINTED_CASES`); ``packed``: the `--packed` runs (the largest is checked)."""
    opt = {r["case"]: r for r in results if r["path"] == "optimised" and r["status"] == "ok"}
    checks: list[dict[str, Any]] = []

    def check(name: str, measured: float | None, goal: str, passed: bool | None) -> None:
        checks.append({"target": name, "measured": measured, "goal": goal, "pass": passed})

    def gib(case: str) -> float | None:
        r = opt.get(case)
        return r["peak_mib"] / 1024 if r and r.get("peak_mib") is not None else None

    for base in dict.fromkeys([*TARGET_IMG_S, *TARGET_PEAK_GIB]):  # in order, once each
        variant = CHECKPOINTED_CASES.get(base)
        for case in (base, variant) if variant in opt else (base,):
            if base in TARGET_IMG_S:
                goal = TARGET_IMG_S[base]
                img_s = opt[case]["img_s"] if case in opt else None
                check(f"{case} img/s", img_s, f">= {goal:g}", img_s is not None and img_s >= goal)
            if base in TARGET_PEAK_GIB:
                goal, peak = TARGET_PEAK_GIB[base], gib(case)
                check(f"{case} peak GiB", peak, f"<= {goal:.1f}", peak is not None and peak <= goal)
    if packed:
        run = max(packed, key=lambda p: p["trials"])
        agg = run.get("aggregate_img_s")
        check(
            f"packed x{run['trials']} {run['case']} img/s",
            agg,
            f">= {TARGET_PACKED_IMG_S:g}",
            agg is not None and agg >= TARGET_PACKED_IMG_S,
        )
    train, val = opt.get("rec-160-b8"), opt.get("infer-160-b8")
    if train and val:
        epoch = EPOCH_TRAIN_IMAGES / train["img_s"] + EPOCH_VAL_IMAGES / val["img_s"]
        goal = f"<= {TARGET_EPOCH_S:g}"
        check("epoch 8k+2k @160, compute only (s)", epoch, goal, epoch <= TARGET_EPOCH_S)
    return checks


def print_targets(checks: list[dict[str, Any]]) -> None:
    print("\ntargets (one H200; reference code there: see docs/BENCHMARKS.md)")
    for c in checks:
        verdict = {True: "PASS", False: "FAIL", None: "-"}[c["pass"]]
        measured = fmt(c["measured"], ".2f")
        print(f"  {c['target']:<40}{measured:>10}  goal {c['goal']:<10} {verdict}")


def print_packed(packed: dict[str, Any], case: Case) -> None:
    per = ", ".join(f"{v:.1f}" for v in packed.get("per_trial_img_s", []))
    print(
        f"\npacked: {packed['trials']} trials of {case.name} (optimised) at once: "
        f"aggregate {fmt(packed.get('aggregate_img_s'), '.2f')} img/s "
        f"(per trial {per or '-'}; status {packed['status']})"
    )


def environment(device: torch.device) -> dict[str, Any]:
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device.type,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }
    try:
        env["load_avg_1m"] = os.getloadavg()[0]  # the CPU figures are only as quiet as this
    except OSError:
        pass
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env
