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
    """The main table; returns one row per case with the ratios b/a."""
    by = {(r["case"], r["path"]): r for r in results}
    header = (
        f"{'case':<14}{'path':<11}{'step ms':>10}{'img/s':>10}{'peak mem':>12}"
        f"{'speed b/a':>11}{'mem b/a':>9}"
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
            line += f"{_mem(r):>12}"
            if label == "optimised" and _ok(a):
                speed = _ratio(a["img_s"], r["img_s"])
                mem = _ratio(a.get("peak_mib"), r.get("peak_mib"))
                line += f"{_times(speed):>11}{_times(mem):>9}"
            print(line)
        both = _ok(a) and _ok(b)
        rows.append(
            {
                "case": case.name,
                "speed_ratio": _ratio(a["img_s"], b["img_s"]) if both else None,
                "memory_ratio": _ratio(a.get("peak_mib"), b.get("peak_mib")) if both else None,
            }
        )
    return rows


def print_ablation(case: Case, results: list[dict[str, Any]]) -> None:
    print(f"\nablation on {case.name} (cumulative; vs previous step and vs the reference)")
    header = f"{'step':<34}{'step ms':>10}{'img/s':>10}{'peak mem':>12}{'vs prev':>9}{'vs ref':>8}"
    print(header)
    print("-" * len(header))
    first = prev = None
    for r in results:
        if r["status"] != "ok":
            print(f"{r['path']:<34}  {r['status']}")
            continue
        first = first or r
        vs_prev = _ratio(prev["img_s"], r["img_s"]) if prev else None
        vs_ref = _ratio(first["img_s"], r["img_s"])
        print(
            f"{r['path']:<34}{r['step_ms']:>10.1f}{r['img_s']:>10.2f}{_mem(r):>12}"
            f"{_times(vs_prev):>9}{_times(vs_ref):>8}"
        )
        prev = r


def target_checks(
    results: list[dict[str, Any]], packed: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The GPU targets against what was measured on the optimised path."""
    opt = {r["case"]: r for r in results if r["path"] == "optimised" and r["status"] == "ok"}
    failed = {r["case"] for r in results if r["path"] == "optimised" and r["status"] != "ok"}
    checks: list[dict[str, Any]] = []

    def check(name: str, measured: float | None, goal: str, passed: bool | None) -> None:
        checks.append({"target": name, "measured": measured, "goal": goal, "pass": passed})

    for case, goal in TARGET_IMG_S.items():
        r = opt.get(case)
        img_s = r["img_s"] if r else None
        check(f"{case} img/s", img_s, f">= {goal:g}", img_s is not None and img_s >= goal)
    for case, goal in TARGET_PEAK_GIB.items():
        r = opt.get(case)
        gib = r["peak_mib"] / 1024 if r and case not in failed else None
        check(f"{case} peak GiB", gib, f"<= {goal:.1f}", gib is not None and gib <= goal)
    if packed is not None:
        agg = packed.get("aggregate_img_s")
        check(
            f"packed x{packed['trials']} {packed['case']} img/s",
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
