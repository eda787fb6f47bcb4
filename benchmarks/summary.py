"""`python -m benchmarks.summary OUT_DIR`: the markdown tables of docs/BENCHMARKS.md "GPU
figures", filled in from the JSON files scripts/gpu_check.sh writes into OUT_DIR.

Reads what is there (bench.json, packed.json, packed-mps.json, ablation.json, compile.json,
search.json) and prints a table per file found; a file that is missing or holds no result gives
a line saying so. Imports only the standard library and the benchmark's own report module.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.report import REFERENCE_CODE_H200


def _load(out: Path, name: str) -> dict[str, Any] | list[Any] | None:
    path = out / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def _num(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _gib(r: dict[str, Any] | None) -> str:
    if not r or r.get("status") != "ok" or r.get("peak_mib") is None:
        return "-"
    return f"{r['peak_mib'] / 1024:.1f} GiB"


def _img_s(r: dict[str, Any] | None) -> str:
    if not r:
        return "-"
    return _num(r.get("img_s")) if r.get("status") == "ok" else r.get("status", "-")


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
        ratio = None
        if a and b and a.get("status") == b.get("status") == "ok":
            ratio = b["img_s"] / a["img_s"]
        host = f"{b['host_ms']:.1f} / {b['step_ms']:.1f}" if b and "host_ms" in b else "-"
        lines.append(
            f"| {name} | {_num(code[0]) if code else '-'} | {_img_s(a)} | {_img_s(b)} | "
            f"{_num(ratio, '.2f')}{'x' if ratio else ''} | {_gib(a)} | {_gib(b)} | {host} |"
        )
    return lines


def targets(bench: dict[str, Any], packed: list[dict[str, Any]]) -> list[str]:
    from benchmarks.report import target_checks

    checks = target_checks(bench.get("results", []), packed)
    lines = ["| target | measured | goal | |", "|---|---:|---|---|"]
    for c in checks:
        verdict = {True: "PASS", False: "FAIL", None: "-"}[c["pass"]]
        lines.append(f"| {c['target']} | {_num(c['measured'], '.2f')} | {c['goal']} | {verdict} |")
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
                f"| {p['trials']} | {label} | {_num(p.get('aggregate_img_s'))} | {per} | "
                f"{f'{peak / 1024:.1f} GiB' if peak else '-'} |"
            )
    return lines


def ablation(rows: list[dict[str, Any]], *, warmup: bool = False) -> list[str]:
    lines = [
        "| step | step ms | img/s | peak | warm-up s |"
        if warmup
        else "| step | step ms | img/s | peak |"
    ]
    lines.append("|---|---:|---:|---:|---:|" if warmup else "|---|---:|---:|---:|")
    seen: dict[str, int] = {}
    for r in rows:
        seen[r["path"]] = seen.get(r["path"], 0) + 1  # a repeated option: its 1st, 2nd run
        label = r["path"] + (f" (run {seen[r['path']]})" if seen[r["path"]] > 1 else "")
        cells = [label, _num(r.get("step_ms")), _img_s(r), _gib(r)]
        if warmup:
            cells.append(_num(r.get("warmup_s")))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def search(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| case | variant | ms | peak MiB | agree | note |", "|---|---|---:|---:|---:|---|"]
    for r in rows:
        agree = f"{100 * r['agree']:.2f} %" if r.get("agree") is not None else ""
        lines.append(
            f"| {r['case']} | {r['variant']} | {_num(r.get('ms'), '.2f')} | "
            f"{_num(r.get('peak_mib'))} | {agree} | {r.get('note', '')} |"
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
