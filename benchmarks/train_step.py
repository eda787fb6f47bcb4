"""`python -m benchmarks.train_step`: the training step's speed and peak memory, two ways.

A benchmark, not a test. Run it from the repository root (`benchmarks/` is not installed). For
each case (image size, batch, losses) it times the step `ttsr.train` runs for two `TrainConfig`
values in one invocation — (a) `reference_config`: the case computed the way researchmm/TTSR
computes it, and (b) the config a study would run for the case (the defaults) — built by the
training builder and stepped by the loop's per-batch code (`benchmarks.timing`), and prints
images/s, step time, peak memory and the ratio b/a.

    python -m benchmarks.train_step                   # CPU preset, ~2-3 min on 2 cores
    python -m benchmarks.train_step --quick           # seconds
    python -m benchmarks.train_step --device cuda --preset gpu --json bench.json
    python -m benchmarks.train_step --device cuda --preset gpu --cases rec-160-b8 --packed 1,2,4
    python -m benchmarks.train_step --ablate --cases rec-96-b2   # one change at a time
    python -m benchmarks.train_step --device cuda --cases rec-160-b8 --no-compare \
        --options bf16-search,checkpoint,compile                # non-defaults, one at a time

Imports only torch, pydantic and ttsr (no Ray, no MLflow): it must run on a bare GPU box.
See docs/BENCHMARKS.md for the method.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from benchmarks import report
from benchmarks.configs import (
    OPTIONS,
    PRESETS,
    Case,
    Preset,
    ablation_configs,
    describe,
    option_configs,
    reference_config,
    speed_settings,
    study_config,
)
from benchmarks.jobs import Job, child_main, run_isolated, run_job, run_packed
from benchmarks.timing import run_interleaved
from ttsr.config import ConfigError, TrainConfig

PROG = "python -m benchmarks.train_step"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Training speed and peak memory: reference path vs optimised path.",
    )
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--preset", choices=sorted(PRESETS), help="default: gpu on cuda, else cpu")
    p.add_argument("--quick", action="store_true", help="same as --preset quick (seconds)")
    p.add_argument("--cases", help="comma-separated case names of the preset (default: all)")
    p.add_argument("--n-feats", type=int, help="override the preset's model width")
    p.add_argument("--blocks", help="override the preset's res blocks, e.g. 16+16+8+4")
    p.add_argument("--warmup", type=int, help="override untimed steps per run")
    p.add_argument("--steps", type=int, help="override timed steps per run")
    p.add_argument("--compile", action="store_true", help="torch.compile MainNet and LTE in (b)")
    p.add_argument(
        "--isolate",
        default="auto",
        choices=("auto", "process", "none"),
        help="one child process per run (auto: on the CPU, where memory is peak RSS)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads per run (default: 1 on the CPU, see docs/BENCHMARKS.md)",
    )
    p.add_argument(
        "--interleave",
        action="store_true",
        help="(a) and (b) of a case in one process, one step each in turn (busy machines)",
    )
    p.add_argument(
        "--packed", default="", metavar="N[,N...]", help="N concurrent trials (a run per N)"
    )
    p.add_argument("--packed-case", help="case for --packed (default: the first rec case)")
    p.add_argument("--ablate", action="store_true", help="add one optimisation at a time")
    p.add_argument(
        "--options",
        default="",
        metavar="NAME[,NAME...]",
        help=f"non-default settings, each alone on the study config: {', '.join(OPTIONS)}",
    )
    p.add_argument("--no-compare", action="store_true", help="skip the reference/optimised table")
    p.add_argument("--json", type=Path, help="write all results here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p


@dataclass(frozen=True)
class Options:
    """The validated flags."""

    device: str
    preset_name: str
    preset: Preset
    n_feats: int
    blocks: str
    cases: tuple[Case, ...]
    threads: int | None
    isolate: str  # "process" or "none"
    compile: bool
    interleave: bool  # (a) and (b) stepped in turn in one process; no memory figures
    packed: tuple[int, ...]  # trial counts, one packed run each
    packed_case: Case | None
    ablate: tuple[Case, ...]  # the cases of the ablation and the options (none: neither)
    cumulative: bool  # --ablate: the cumulative ablation on the `ablate` cases
    options: tuple[str, ...]  # `OPTIONS` names
    compare: bool
    json: Path | None

    def config(self, case: Case) -> TrainConfig:
        """The optimised path = what a study runs for ``case``."""
        return study_config(
            case, device=self.device, n_feats=self.n_feats, blocks=self.blocks, compile=self.compile
        )


def options(args: argparse.Namespace) -> Options:
    """Check the flags; a bad one is a one-line SystemExit naming it."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device: cuda requested but torch.cuda.is_available() is False")
    cpu = args.device == "cpu"
    preset_name = "quick" if args.quick else args.preset or ("cpu" if cpu else "gpu")
    preset = PRESETS[preset_name]
    n_feats, blocks = args.n_feats or preset.n_feats, args.blocks or preset.blocks
    try:
        TrainConfig(n_feats=n_feats, num_res_blocks=blocks)
    except ConfigError as exc:
        raise SystemExit(f"--n-feats/--blocks: {exc}") from None
    for flag, least in (("warmup", 0), ("steps", 1), ("threads", 1)):
        value = getattr(args, flag)
        if value is not None and value < least:
            raise SystemExit(f"--{flag}: must be >= {least}, got {value}")
    packed, names = _packed_counts(args.packed), _option_names(args.options)
    cases = _select_cases(preset, args.cases, args.warmup, args.steps)
    first_rec_case = next((c for c in cases if c.losses == "rec"), cases[0])
    packed_case = None
    if packed:
        name = args.packed_case or first_rec_case.name
        packed_case = _select_cases(preset, name, args.warmup, args.steps)[0]
    return Options(
        device=args.device,
        preset_name=preset_name,
        preset=preset,
        n_feats=n_feats,
        blocks=blocks,
        cases=tuple(cases),
        # On a small shared CPU, >1 intra-op thread makes every OpenMP barrier wait for a thread
        # the OS descheduled: measured 13x slower steps at load 12 on 2 cores. One is stable.
        threads=args.threads if args.threads is not None else (1 if cpu else None),
        isolate=args.isolate if args.isolate != "auto" else ("process" if cpu else "none"),
        compile=args.compile,
        interleave=args.interleave,
        packed=packed,
        packed_case=packed_case,
        # The ablation and the options run on the named cases, else on the first rec case.
        ablate=(tuple(cases) if args.cases else (first_rec_case,)) if args.ablate or names else (),
        cumulative=args.ablate,
        options=names,
        compare=not args.no_compare,
        json=args.json,
    )


def _packed_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SystemExit(f"--packed: want trial counts like 1,2,4, got {text!r}") from None
    if any(n < 1 for n in counts):
        raise SystemExit(f"--packed: every count must be >= 1, got {text!r}")
    return counts


def _option_names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in OPTIONS]
    if unknown:
        raise SystemExit(f"--options: unknown {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    return names


def _select_cases(
    preset: Preset, names: str | None, warmup: int | None, steps: int | None
) -> list[Case]:
    cases = list(preset.cases)
    if names:
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        known = {c.name for c in cases}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise SystemExit(
                f"--cases: unknown case(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        cases = [c for c in cases if c.name in wanted]
        if not cases:
            raise SystemExit(f"--cases: no case named in {names!r}")
    changes = {k: v for k, v in (("warmup", warmup), ("steps", steps)) if v is not None}
    return [replace(c, **changes) for c in cases]


Execute = Callable[[Job], dict[str, Any]]
Record = Callable[[dict[str, Any], TrainConfig], dict[str, Any]]


def compare(opts: Options, execute: Execute, record: Record) -> list[dict[str, Any]]:
    """(a) and (b) of every case, back to back (`--interleave`: stepped in turn)."""
    results = []
    for case in opts.cases:
        config = opts.config(case)
        if opts.interleave and case.reference:
            pair = [("reference", reference_config(config)), ("optimised", config)]
            results += [
                record(r, c) for r, (_, c) in zip(run_interleaved(case, pair), pair, strict=True)
            ]
            print(f"  done {case.name}: interleaved", flush=True)
            continue
        if case.reference:
            results.append(execute(Job(case, reference_config(config), "reference", opts.threads)))
        else:
            why = "its reference is the case without " if case.changes else "cannot fit"
            why += ", ".join(k for k, _ in case.changes)
            skipped = {"case": case.name, "path": "reference", "status": f"skipped ({why})"}
            results.append(skipped)
        results.append(execute(Job(case, config, "optimised", opts.threads)))
        print(f"  done {case.name}: optimised {results[-1]['status']}", flush=True)
    return results


def ablate(opts: Options, execute: Execute) -> list[dict[str, Any]]:
    """The cumulative ablation from (a) to (b) (`--ablate`; else (b) alone, as the baseline),
    then each of `--options` alone on (b), on each `opts.ablate` case."""
    rows: list[dict[str, Any]] = []
    for case in opts.ablate:
        config = opts.config(case)
        steps = ablation_configs(config) if opts.cumulative else [("default", config)]
        base = [execute(Job(case, c, label, opts.threads)) for label, c in steps]
        extra = [
            execute(Job(case, c, label, opts.threads))
            for label, c in option_configs(config, opts.options)
        ]
        report.print_ablation(case, base, extra)
        rows.extend(base + extra)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child is not None:
        return child_main(args.child)
    opts = options(args)
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    device = torch.device(opts.device)
    out = _header(opts, report.environment(device))

    def record(r: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
        r.update(size=config.size, batch=config.batch_size)
        r["config"] = config.to_dict()
        out["done"].append(r)
        _save(opts, out)  # a run cut short by a timeout keeps what it measured
        return r

    def execute(job: Job) -> dict[str, Any]:
        r = run_isolated(job) if opts.isolate == "process" else run_job(job)
        r["losses"] = job.case.losses
        return record(r, job.config)

    if opts.compare:
        out["results"] = compare(opts, execute, record)
        print()
        out["ratios"] = report.print_comparison(list(opts.cases), out["results"])
    if opts.packed_case is not None:
        job = Job(opts.packed_case, opts.config(opts.packed_case), "optimised", opts.threads)
        for count in opts.packed:
            out["packed"].append(run_packed(job, count))
            report.print_packed(out["packed"][-1], opts.packed_case)
            _save(opts, out)
    if opts.ablate:
        out["ablation"] = ablate(opts, execute)
    _finish(opts, device, out)
    failed = [r for r in out["done"] if r["status"].startswith("error")]
    return 1 if failed else 0


def _header(opts: Options, env: dict[str, Any]) -> dict[str, Any]:
    """Print what runs; the JSON document the results go into."""
    optimised = opts.config(opts.cases[0])
    reference = reference_config(optimised)
    print(
        f"benchmarks.train_step | preset {opts.preset_name} | device "
        f"{env.get('gpu', env['device'])} | torch {env['torch']} | model n_feats {opts.n_feats}, "
        f"blocks {opts.blocks} | isolate {opts.isolate} | load {env.get('load_avg_1m', '-')} | "
        f"{env['date']}"
    )
    print(f"(a) reference: {describe(reference)}\n(b) optimised: {describe(optimised)}")
    if opts.device == "cpu":
        print(
            "(CPU: channels_last does nothing, fast_kernels only MainNet's "
            "(TTSR.use_fast_kernels); amp auto = fp32)"
        )
    print(flush=True)
    return {
        "environment": env,
        "preset": opts.preset_name,
        "model": {"n_feats": opts.n_feats, "blocks": opts.blocks},
        "isolate": opts.isolate,
        "settings": {
            "reference": speed_settings(reference),
            "optimised": speed_settings(optimised),
        },
        "cases": [asdict(c) for c in opts.cases],
        "results": [],
        "packed": [],
        "done": [],  # every timed run so far, in order (also those of the ablation)
    }


def _save(opts: Options, out: dict[str, Any]) -> None:
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps(out, indent=2))


def _finish(opts: Options, device: torch.device, out: dict[str, Any]) -> None:
    out["environment"]["load_avg_1m_end"] = report.environment(device).get("load_avg_1m")
    if device.type == "cuda" and opts.preset_name == "gpu":
        out["targets"] = report.target_checks(out["results"], out["packed"])
        report.print_targets(out["targets"])
    elif opts.compare:
        print(
            "\n(targets are for the gpu preset on an H200: run scripts/gpu_check.sh on a GPU; "
            "CPU ratios are not comparable)"
        )
    _save(opts, out)
    if opts.json:
        print(f"\nwrote {opts.json}")


if __name__ == "__main__":
    raise SystemExit(main())
