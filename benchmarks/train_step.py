"""`python -m benchmarks.train_step`: the training step's speed and peak memory, two ways.

For each case (image size, batch, losses) it times the step `ttsr.train` runs for (a)
`reference_config`: the case computed the way researchmm/TTSR computes it, and (b) the config a
study would run for the case (the defaults), built by the training builder and stepped by the
loop's per-batch code (`benchmarks.timing`), and prints images/s, step time, peak memory and the
ratio b/a. Usage and method: docs/BENCHMARKS.md. Imports only torch, pydantic and ttsr (no Ray,
no MLflow): it must run on a bare GPU box.

A run in a child process (`--isolate process`, the CPU default, so that its peak RSS is its own)
is `python -m benchmarks.train_step --child JOB_JSON` in the repository root; it prints one
`RESULT_PREFIX` line. Packed trials are N such children on one device that start their timed
steps together (a file barrier); aggregate images/s = all timed images / the span from the first
start to the last end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from subprocess import PIPE, Popen
from typing import Any

import torch

from benchmarks import summary
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
from benchmarks.timing import run_case, run_interleaved
from ttsr.config import ConfigError, TrainConfig

RESULT_PREFIX = "BENCH_RESULT "
ROOT = Path(__file__).resolve().parents[1]  # where `python -m benchmarks...` finds the package


@dataclass(frozen=True)
class Job:
    case: Case
    config: TrainConfig
    path: str  # label: "reference", "optimised" or an ablation step
    threads: int | None = None  # torch intra-op threads in the process that runs it
    barrier: tuple[str, int, int] | None = None  # (dir, rank, count) for packed trials


def job_to_json(job: Job) -> str:
    return json.dumps({**asdict(job), "config": job.config.to_dict()})


def job_from_json(text: str) -> Job:
    d = json.loads(text)
    changes = tuple(tuple(c) for c in d["case"]["changes"])
    barrier = tuple(d["barrier"]) if d["barrier"] is not None else None
    config = TrainConfig.from_dict(d["config"])
    return Job(Case(**{**d["case"], "changes": changes}), config, d["path"], d["threads"], barrier)


def child_main(text: str) -> int:
    """`--child`: run the job in this (fresh) process and print its result line."""
    job = job_from_json(text)
    if job.threads is not None:
        torch.set_num_threads(job.threads)
    result = run_case(job.case, job.config, barrier=job.barrier, fresh_process=True)
    print(RESULT_PREFIX + json.dumps({**result, "path": job.path}), flush=True)
    return 0


def run_children(jobs: list[Job]) -> list[dict[str, Any]]:
    """Each job in a child process of its own, all started at once; their results."""
    command = [sys.executable, "-m", "benchmarks.train_step", "--child"]
    procs = [
        Popen([*command, job_to_json(j)], stdout=PIPE, stderr=PIPE, text=True, cwd=ROOT)
        for j in jobs
    ]
    return [_parse_child(j, p, *p.communicate()) for j, p in zip(jobs, procs, strict=True)]


def _parse_child(job: Job, proc: Popen, out: str, err: str) -> dict[str, Any]:
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line.removeprefix(RESULT_PREFIX))
    why = "killed (out of memory?)" if proc.returncode in (-9, 137) else "failed"
    last = (err.strip().splitlines() or ["no output"])[-1][:300]
    status = f"error: child {why} (rc {proc.returncode}): {last}"
    return {"case": job.case.name, "path": job.path, "status": status}


def run_packed(job: Job, count: int) -> dict[str, Any]:
    """``count`` concurrent trial processes of ``job`` on one device; aggregate images/s."""
    with tempfile.TemporaryDirectory(prefix="ttsr-bench-") as barrier:
        trials = run_children([replace(job, barrier=(barrier, i, count)) for i in range(count)])
    ok = [t for t in trials if t["status"] == "ok"]
    result: dict[str, Any] = {
        "case": job.case.name,
        "path": job.path,
        "trials": count,
        "per_trial": trials,
        "status": "ok" if len(ok) == count else "error",
    }
    if ok:
        span = max(t["wall_end"] for t in ok) - min(t["wall_start"] for t in ok)
        result["aggregate_img_s"] = sum(t["images"] for t in ok) / span
        result["per_trial_img_s"] = [t["img_s"] for t in ok]
        result["peak_mib_per_trial"] = max(t.get("peak_mib") or 0.0 for t in ok)
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.train_step",
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


def options(args: argparse.Namespace) -> argparse.Namespace:
    """Check the flags and resolve their defaults in ``args`` (cases become `Case` values; adds
    `ablate_cases`); a bad flag is a one-line SystemExit naming it."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device: cuda requested but torch.cuda.is_available() is False")
    cpu = args.device == "cpu"
    args.preset = "quick" if args.quick else args.preset or ("cpu" if cpu else "gpu")
    preset = PRESETS[args.preset]
    args.n_feats, args.blocks = args.n_feats or preset.n_feats, args.blocks or preset.blocks
    try:
        TrainConfig(n_feats=args.n_feats, num_res_blocks=args.blocks)
    except ConfigError as exc:
        raise SystemExit(f"--n-feats/--blocks: {exc}") from None
    for flag, least in (("warmup", 0), ("steps", 1), ("threads", 1)):
        value = getattr(args, flag)
        if value is not None and value < least:
            raise SystemExit(f"--{flag}: must be >= {least}, got {value}")
    args.packed, args.options = _packed_counts(args.packed), _option_names(args.options)
    named = args.cases
    args.cases = _select_cases(preset, named, args)
    first_rec_case = next((c for c in args.cases if c.losses == "rec"), args.cases[0])
    if args.packed:  # `packed_case`: the case's name, then the case
        name = args.packed_case or first_rec_case.name
        args.packed_case = _select_cases(preset, name, args)[0]
    # On a small shared CPU, >1 intra-op thread makes every OpenMP barrier wait for a thread
    # the OS descheduled: measured 13x slower steps at load 12 on 2 cores. One is stable.
    if args.threads is None and cpu:
        args.threads = 1
    if args.isolate == "auto":
        args.isolate = "process" if cpu else "none"
    # The ablation and the options run on the named cases, else on the first rec case.
    args.ablate_cases = []
    if args.ablate or args.options:
        args.ablate_cases = args.cases if named else [first_rec_case]
    return args


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


def _select_cases(preset: Preset, names: str | None, args: argparse.Namespace) -> list[Case]:
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
    changes = {k: getattr(args, k) for k in ("warmup", "steps") if getattr(args, k) is not None}
    return [replace(c, **changes) for c in cases]


def _config(opts: argparse.Namespace, case: Case) -> TrainConfig:
    """The optimised path = what a study runs for ``case``."""
    return study_config(
        case, device=opts.device, n_feats=opts.n_feats, blocks=opts.blocks, compile=opts.compile
    )


Execute = Callable[[Job], dict[str, Any]]


def compare(opts: argparse.Namespace, execute: Execute, record: Callable) -> list[dict[str, Any]]:
    """(a) and (b) of every case, back to back (`--interleave`: stepped in turn)."""
    results = []
    for case in opts.cases:
        config = _config(opts, case)
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


def ablate(opts: argparse.Namespace, execute: Execute) -> list[dict[str, Any]]:
    """The cumulative ablation from (a) to (b) (`--ablate`; else (b) alone, as the baseline),
    then each of `--options` alone on (b), on each of `opts.ablate_cases`."""
    rows: list[dict[str, Any]] = []
    for case in opts.ablate_cases:
        config = _config(opts, case)
        steps = ablation_configs(config) if opts.ablate else [("default", config)]
        base = [execute(Job(case, c, label, opts.threads)) for label, c in steps]
        extra = [
            execute(Job(case, c, label, opts.threads))
            for label, c in option_configs(config, opts.options)
        ]
        summary.print_ablation(case, base, extra)
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
    out = _header(opts, environment(device))

    def record(r: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
        r.update(size=config.size, batch=config.batch_size)
        r["config"] = config.to_dict()
        out["done"].append(r)
        _save(opts, out)  # a run cut short by a timeout keeps what it measured
        return r

    def execute(job: Job) -> dict[str, Any]:
        if opts.isolate == "process":
            r = run_children([job])[0]
        else:
            r = {**run_case(job.case, job.config), "path": job.path}
        r["losses"] = job.case.losses
        return record(r, job.config)

    if not opts.no_compare:
        out["results"] = compare(opts, execute, record)
        print()
        out["ratios"] = summary.print_comparison(opts.cases, out["results"])
    if opts.packed:
        job = Job(opts.packed_case, _config(opts, opts.packed_case), "optimised", opts.threads)
        for count in opts.packed:
            out["packed"].append(run_packed(job, count))
            summary.print_packed(out["packed"][-1], opts.packed_case)
            _save(opts, out)
    if opts.ablate_cases:
        out["ablation"] = ablate(opts, execute)
    _finish(opts, device, out)
    failed = [r for r in out["done"] if r["status"].startswith("error")]
    return 1 if failed else 0


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
    with suppress(OSError):
        env["load_avg_1m"] = os.getloadavg()[0]  # the CPU figures are only as quiet as this
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def _header(opts: argparse.Namespace, env: dict[str, Any]) -> dict[str, Any]:
    """Print what runs; the JSON document the results go into."""
    optimised = _config(opts, opts.cases[0])
    reference = reference_config(optimised)
    print(
        f"benchmarks.train_step | preset {opts.preset} | device "
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
        "preset": opts.preset,
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


def _save(opts: argparse.Namespace, out: dict[str, Any]) -> None:
    if opts.json:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps(out, indent=2))


def _finish(opts: argparse.Namespace, device: torch.device, out: dict[str, Any]) -> None:
    out["environment"]["load_avg_1m_end"] = environment(device).get("load_avg_1m")
    if device.type == "cuda" and opts.preset == "gpu":
        out["targets"] = summary.target_checks(out["results"], out["packed"])
        summary.print_targets(out["targets"])
    elif not opts.no_compare:
        print(
            "\n(targets are for the gpu preset on an H200: run scripts/gpu_check.sh on a GPU; "
            "CPU ratios are not comparable)"
        )
    _save(opts, out)
    if opts.json:
        print(f"\nwrote {opts.json}")


if __name__ == "__main__":
    raise SystemExit(main())
