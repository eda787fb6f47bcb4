"""The benchmark's tables and GPU targets, standard library only.

`benchmarks.train_step` prints its tables through here. `python -m benchmarks.summary OUT_DIR`
prints the markdown tables of docs/BENCHMARKS.md "GPU figures" from the JSON files
scripts/gpu_check.sh writes into OUT_DIR (bench.json, packed.json, packed-mps.json,
ablation.json, compile.json, search.json): a table per file found, else a line saying so.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

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
VERDICT = {True: "PASS", False: "FAIL", None: "-"}


def fmt(value: float | None, spec: str = ".1f") -> str:
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


def print_comparison(cases: list[Any], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
        ratios = {"speed_ratio": None, "cpu_ratio": None, "memory_ratio": None}
        if _ok(a) and _ok(b):
            ratios = {
                "speed_ratio": _ratio(a["img_s"], b["img_s"]),
                "cpu_ratio": _ratio(b.get("cpu_ms"), a.get("cpu_ms")),  # time a/b = speed b/a
                "memory_ratio": _ratio(a.get("peak_mib"), b.get("peak_mib")),
            }
        rows.append({"case": case.name, **ratios})
        for label, r in (("reference", a), ("optimised", b)):
            if r is None:
                continue
            if r["status"] != "ok":
                print(f"{case.name:<14}{label:<11}  {r['status']}")
                continue
            line = f"{case.name:<14}{label:<11}{r['step_ms']:>10.1f}{r['img_s']:>10.2f}"
            line += f"{fmt(r.get('cpu_ms')):>10}{_mem(r):>12}"
            if label == "optimised" and _ok(a):
                speed, cpu, mem = (_times(v) for v in ratios.values())
                line += f"{speed:>11}{cpu:>9}{mem:>9}"
            print(line)
    return rows


def print_ablation(case: Any, results: list[dict[str, Any]], options: list[dict[str, Any]]) -> None:
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

    for base in dict.fromkeys([*TARGET_IMG_S, *TARGET_PEAK_GIB]):  # in order, once each
        variant = CHECKPOINTED_CASES.get(base)
        for case in (base, variant) if variant in opt else (base,):
            r = opt.get(case, {})
            if base in TARGET_IMG_S:
                goal, img_s = TARGET_IMG_S[base], r.get("img_s")
                check(f"{case} img/s", img_s, f">= {goal:g}", img_s is not None and img_s >= goal)
            if base in TARGET_PEAK_GIB:
                goal, peak = TARGET_PEAK_GIB[base], r.get("peak_mib")
                peak = None if peak is None else peak / 1024
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
        measured = fmt(c["measured"], ".2f")
        print(f"  {c['target']:<40}{measured:>10}  goal {c['goal']:<10} {VERDICT[c['pass']]}")


def print_packed(packed: dict[str, Any], case: Any) -> None:
    per = ", ".join(f"{v:.1f}" for v in packed.get("per_trial_img_s", []))
    print(
        f"\npacked: {packed['trials']} trials of {case.name} (optimised) at once: "
        f"aggregate {fmt(packed.get('aggregate_img_s'), '.2f')} img/s "
        f"(per trial {per or '-'}; status {packed['status']})"
    )


# The markdown tables of `python -m benchmarks.summary`.


def _load(out: Path, name: str) -> dict[str, Any] | list[Any] | None:
    try:
        return json.loads((out / name).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _gib(r: dict[str, Any] | None) -> str:
    ok = r and r.get("status") == "ok" and r.get("peak_mib") is not None
    return f"{r['peak_mib'] / 1024:.1f} GiB" if ok else "-"


def _img_s(r: dict[str, Any] | None) -> str:
    if not r:
        return "-"
    return fmt(r.get("img_s")) if r.get("status") == "ok" else r.get("status", "-")


def header(bench: dict[str, Any]) -> list[str]:
    env = bench["environment"]
    return [
        f"GPU: **{env.get('gpu', '?')}**, PyTorch {env['torch']}, CUDA {env.get('cuda', '?')}, "
        f"Python {env['python']}, {env['date']} (scripts/gpu_check.sh).",
        "",
    ]


def comparison(bench: dict[str, Any]) -> list[str]:
    by = {(r["case"], r["path"]): r for r in bench.get("results", [])}
    lines = [
        "| case | reference code (H200) | (a) reference path | (b) optimised | b/a | "
        "peak (a) | peak (b) | host ms / step ms (b) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in bench.get("cases", []):
        name = case["name"]
        a, b = by.get((name, "reference")), by.get((name, "optimised"))
        code = REFERENCE_CODE_H200.get(name)
        ratio = _ratio(a["img_s"], b["img_s"]) if _ok(a) and _ok(b) else None
        host = f"{b['host_ms']:.1f} / {b['step_ms']:.1f}" if b and "host_ms" in b else "-"
        lines.append(
            f"| {name} | {fmt(code[0]) if code else '-'} | {_img_s(a)} | {_img_s(b)} | "
            f"{fmt(ratio, '.2f')}{'x' if ratio else ''} | {_gib(a)} | {_gib(b)} | {host} |"
        )
    return lines


def targets(bench: dict[str, Any], packed: list[dict[str, Any]]) -> list[str]:
    lines = ["| target | measured | goal | |", "|---|---:|---|---|"]
    for c in target_checks(bench.get("results", []), packed):
        measured = fmt(c["measured"], ".2f")
        lines.append(f"| {c['target']} | {measured} | {c['goal']} | {VERDICT[c['pass']]} |")
    return lines


def packing(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = [
        "| trials | MPS | aggregate img/s | per trial img/s | peak per trial |",
        "|---:|---|---:|---|---:|",
    ]
    for label, packed in runs.items():
        for p in packed:
            per = ", ".join(f"{v:.0f}" for v in p.get("per_trial_img_s", [])) or p["status"]
            peak = p.get("peak_mib_per_trial")
            lines.append(
                f"| {p['trials']} | {label} | {fmt(p.get('aggregate_img_s'))} | {per} | "
                f"{f'{peak / 1024:.1f} GiB' if peak else '-'} |"
            )
    return lines


def ablation(rows: list[dict[str, Any]], *, warmup: bool = False) -> list[str]:
    columns = ["step", "step ms", "img/s", "peak", *(["warm-up s"] if warmup else [])]
    lines = ["| " + " | ".join(columns) + " |", "|---" + "|---:" * (len(columns) - 1) + "|"]
    seen: dict[str, int] = {}
    for r in rows:
        seen[r["path"]] = seen.get(r["path"], 0) + 1  # a repeated option: its 1st, 2nd run
        label = r["path"] + (f" (run {seen[r['path']]})" if seen[r["path"]] > 1 else "")
        cells = [label, fmt(r.get("step_ms")), _img_s(r), _gib(r)]
        if warmup:
            cells.append(fmt(r.get("warmup_s")))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def search(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| case | variant | ms | peak MiB | agree | note |", "|---|---|---:|---:|---:|---|"]
    for r in rows:
        agree = f"{100 * r['agree']:.2f} %" if r.get("agree") is not None else ""
        lines.append(
            f"| {r['case']} | {r['variant']} | {fmt(r.get('ms'), '.2f')} | "
            f"{fmt(r.get('peak_mib'))} | {agree} | {r.get('note', '')} |"
        )
    return lines


def summary(out: Path) -> str:
    bench = _load(out, "bench.json")
    packed = {
        label: (_load(out, name) or {}).get("packed", [])
        for label, name in (("no", "packed.json"), ("yes", "packed-mps.json"))
    }
    parts: list[list[str]] = []
    if isinstance(bench, dict):
        parts += [header(bench), ["### Reference path vs optimised", ""], comparison(bench)]
        parts += [["", "### Targets", ""], targets(bench, packed["no"])]
    else:
        parts.append(["bench.json: missing or unreadable (the bench step did not finish)"])
    parts += [["", "### Packed 160-px trials (rec-160-b8)", ""], packing(packed)]
    for name, title, warm in (
        ("ablation.json", "Ablation (rec-160-b8; options each alone on the default)", False),
        ("compile.json", "torch.compile (fresh process each; 2nd = warm FX graph cache)", True),
    ):
        doc = _load(out, name)
        rows = (doc.get("ablation") or doc.get("done", [])) if isinstance(doc, dict) else []
        parts += [["", f"### {title}", ""], ablation(rows, warmup=warm) if rows else ["(none)"]]
    rows = _load(out, "search.json")
    parts += [["", "### Relevance search alone", ""], search(rows) if rows else ["(none)"]]
    return "\n".join(line for part in parts for line in part) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python -m benchmarks.summary OUT_DIR", file=sys.stderr)
        return 2
    print(summary(Path(args[0])), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
