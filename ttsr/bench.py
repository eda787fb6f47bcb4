"""`python -m ttsr.bench`: training speed and peak memory, reference path vs optimised path.

A benchmark, not a test. For each configuration (image size, batch, losses) it times the
training step `ttsr.train` runs (`ttsr.step.TrainStep`, built by `ttsr.optimize.TrainingStep`)
two ways in one invocation — (a) the way the reference runs (`ttsr.optimize.REFERENCE`) and
(b) the optimised path (`optimised(device)`) — and prints images/s, step time, peak memory and
the ratio b/a. Data are random tensors created on the device once (like the reference figures
in docs/BENCHMARKS.md): the loader is measured separately by `python -m ttsr.data bench`.

    python -m ttsr.bench                              # CPU preset, ~2-3 min on 2 cores
    python -m ttsr.bench --device cuda --preset gpu --json bench.json
    python -m ttsr.bench --device cuda --preset gpu --cases rec-160-b8 --packed 4
    python -m ttsr.bench --ablate --cases rec-96-b2   # one optimisation at a time

Timing: `warmup` untimed steps, then `steps` timed steps between two device synchronisations;
step time = elapsed / steps, images/s = batch / step time.

Peak memory: on CUDA `torch.cuda.max_memory_allocated` over model, optimiser state and step
(reset before each run). On the CPU the peak RSS of a fresh child process (`ru_maxrss`) minus
its RSS just before the model is built, so every (configuration, path) runs in its own
subprocess there (`--isolate process`, the CPU default); with `--isolate none` CPU memory is
not reported.

This module imports only torch and ttsr (no Ray, no MLflow): it must run on a bare GPU box.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ttsr.model import ModelConfig
from ttsr.optimize import (
    ALL_LOSSES,
    REC_ONLY,
    REFERENCE,
    PathSettings,
    TrainingStep,
    ablation_steps,
    optimised,
    set_backend_flags,
)

RESULT_PREFIX = "BENCH_RESULT "
GIB = 2**30
MIB = 2**20
LOSSES = ("rec", "all", "infer")  # reconstruction only, all four losses, inference (validation)


@dataclass(frozen=True)
class Case:
    name: str
    size: int  # HR / reference side; LR is size // 4
    batch: int
    losses: str  # one of LOSSES
    warmup: int
    steps: int
    reference: bool = True  # False: the reference path is known not to fit, skip it


@dataclass(frozen=True)
class Preset:
    n_feats: int
    blocks: str
    cases: tuple[Case, ...]


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
            Case("rec-1024-b1", 1024, 1, "rec", 1, 3),
            # Dense relevance alone would be 8 x 16 GiB (65536^2 fp32 per image): skip (a).
            Case("rec-1024-b8", 1024, 8, "rec", 1, 3, reference=False),
        ),
    ),
}

# Targets on one H200 (docs/BENCHMARKS.md); reference-code figures from docs/REFERENCE facts.
REFERENCE_CODE_H200 = {  # case -> (img/s, peak GiB or None)
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


# --- one run: (case, settings) on a device ---------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _random_batch(case: Case, device: torch.device) -> list[torch.Tensor]:
    """LR, LR_up, HR, Ref, Ref_downup: uniform in [-1, 1], on the device."""
    g = torch.Generator(device=device).manual_seed(0)
    small = (case.batch, 3, case.size // 4, case.size // 4)
    large = (case.batch, 3, case.size, case.size)
    shapes = [small, large, large, large, large]
    return [torch.rand(s, generator=g, device=device) * 2 - 1 for s in shapes]


def _wait_barrier(barrier: str, rank: int, count: int, timeout: float = 600.0) -> None:
    """File barrier so that packed trials start their timed steps together."""
    Path(barrier, f"ready-{rank}").touch()
    deadline = time.monotonic() + timeout
    while len(list(Path(barrier).glob("ready-*"))) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"packed trial {rank}: other trials never became ready")
        time.sleep(0.01)


def run_case(
    case: Case,
    settings: PathSettings,
    *,
    device: torch.device,
    model_config: ModelConfig,
    barrier: tuple[str, int, int] | None = None,
    fresh_process: bool = False,
) -> dict[str, Any]:
    """Time `case` under `settings`; returns a JSON-able result (status 'ok' or 'oom').

    fresh_process: this process ran nothing before (CPU peak RSS is then meaningful).
    """
    result: dict[str, Any] = {"case": case.name, "status": "ok"}
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = _rss_bytes()
    set_backend_flags(settings, device)
    trainer = None
    try:
        weights = ALL_LOSSES if case.losses == "all" else REC_ONLY
        trainer = TrainingStep(
            model_config=model_config, weights=weights, settings=settings, device=device
        )
        lr, lr_up, hr, ref, ref_downup = (trainer.prepare(t) for t in _random_batch(case, device))
        total = torch.zeros((), device=device)

        def one_step() -> torch.Tensor:
            if case.losses == "infer":
                return trainer.infer(lr, lr_up, ref, ref_downup).sr.float().mean()
            return trainer.step(lr, lr_up, hr, ref, ref_downup)["total"]

        def run(n: int) -> torch.Tensor:
            acc = total
            for _ in range(n):
                loss = one_step()
                if settings.sync_each_step:
                    float(loss)  # what a per-step log line or loss.item() costs
                acc = acc + loss
            return acc

        run(case.warmup)
        if device.type == "cuda":
            result["host_syncs_per_step"] = _count_host_syncs(lambda: run(1))
        _sync(device)
        if barrier is not None:
            _wait_barrier(*barrier)
        wall_start = time.time()
        t0 = time.perf_counter()
        acc = run(case.steps)
        _sync(device)
        elapsed = time.perf_counter() - t0
        result.update(
            step_ms=1e3 * elapsed / case.steps,
            img_s=case.batch * case.steps / elapsed,
            images=case.batch * case.steps,
            wall_start=wall_start,
            wall_end=time.time(),
            mean_loss=float(acc) / case.steps,
        )
        if device.type == "cuda":
            result["peak_mib"] = torch.cuda.max_memory_allocated(device) / MIB
            result["memory"] = "cuda max_memory_allocated"
        elif fresh_process:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
            result["peak_mib"] = (peak - rss_before) / MIB
            result["memory"] = "peak RSS above pre-model RSS"
    except torch.cuda.OutOfMemoryError as exc:  # (= torch.OutOfMemoryError on recent PyTorch)
        result.update(status="oom", error=str(exc).splitlines()[0][:200])
    finally:
        trainer = None  # free the model and optimiser state before the next run
        if device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
    return result


def _count_host_syncs(fn: Any) -> int:
    """How many synchronising CUDA calls `fn` makes (torch's sync debug mode, as warnings)."""
    _sync(torch.device("cuda"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


# --- running runs: in this process or in a child ---------------------------------------------


@dataclass(frozen=True)
class Job:
    case: Case
    settings: PathSettings
    path: str  # label: "reference", "optimised" or an ablation step
    device: str
    n_feats: int
    blocks: str
    threads: int | None = None
    barrier: tuple[str, int, int] | None = None  # (dir, rank, count) for packed trials


def run_job(job: Job, *, fresh_process: bool = False) -> dict[str, Any]:
    device = torch.device(job.device)
    if job.threads is not None:
        torch.set_num_threads(job.threads)
    result = run_case(
        job.case,
        job.settings,
        device=device,
        model_config=ModelConfig.from_string(job.blocks, n_feats=job.n_feats),
        barrier=job.barrier,
        fresh_process=fresh_process,
    )
    result["path"] = job.path
    return result


def _job_to_json(job: Job) -> str:
    return json.dumps(asdict(job))


def _job_from_json(text: str) -> Job:
    d = json.loads(text)
    return Job(
        case=Case(**d["case"]),
        settings=PathSettings(**d["settings"]),
        path=d["path"],
        device=d["device"],
        n_feats=d["n_feats"],
        blocks=d["blocks"],
        threads=d["threads"],
        barrier=tuple(d["barrier"]) if d["barrier"] is not None else None,
    )


def _child_command(job: Job) -> list[str]:
    return [sys.executable, "-m", "ttsr.bench", "--child", _job_to_json(job)]


def _parse_child(job: Job, proc: subprocess.CompletedProcess | Any, out: str, err: str) -> dict:
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    why = "killed (out of memory?)" if proc.returncode in (-9, 137) else "failed"
    last = (err.strip().splitlines() or ["no output"])[-1][:300]
    return {
        "case": job.case.name,
        "path": job.path,
        "status": f"error: child {why} (rc {proc.returncode}): {last}",
    }


def run_isolated(job: Job, timeout: float | None = None) -> dict[str, Any]:
    proc = subprocess.run(_child_command(job), capture_output=True, text=True, timeout=timeout)
    return _parse_child(job, proc, proc.stdout, proc.stderr)


def run_packed(job: Job, count: int) -> dict[str, Any]:
    """`count` concurrent trial processes of `job` on one device; aggregate images/s."""
    with tempfile.TemporaryDirectory(prefix="ttsr-bench-") as barrier:
        jobs = [replace(job, barrier=(barrier, i, count)) for i in range(count)]
        procs = [
            subprocess.Popen(
                _child_command(j), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for j in jobs
        ]
        trials = []
        for j, p in zip(jobs, procs, strict=True):
            out, err = p.communicate()
            trials.append(_parse_child(j, p, out, err))
    ok = [t for t in trials if t["status"] == "ok"]
    summary: dict[str, Any] = {
        "case": job.case.name,
        "path": job.path,
        "trials": count,
        "per_trial": trials,
        "status": "ok" if len(ok) == count else "error",
    }
    if ok:
        span = max(t["wall_end"] for t in ok) - min(t["wall_start"] for t in ok)
        summary["aggregate_img_s"] = sum(t["images"] for t in ok) / span
        summary["per_trial_img_s"] = [t["img_s"] for t in ok]
        summary["peak_mib_per_trial"] = max(t.get("peak_mib") or 0.0 for t in ok)
    return summary


# --- printing --------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
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


def print_comparison(cases: list[Case], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The main table; returns one row per case with the ratios."""
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
            print(
                f"{case.name:<14}{label:<11}{r['step_ms']:>10.1f}{r['img_s']:>10.2f}{_mem(r):>12}",
                end="",
            )
            if label == "optimised" and a is not None and a["status"] == "ok":
                speed = _ratio(a["img_s"], r["img_s"])
                mem = _ratio(a.get("peak_mib"), r.get("peak_mib"))
                print(f"{_times(speed):>11}{_times(mem):>9}", end="")
            print()
        ok = lambda r: r is not None and r["status"] == "ok"  # noqa: E731
        rows.append(
            {
                "case": case.name,
                "speed_ratio": _ratio(a["img_s"], b["img_s"]) if ok(a) and ok(b) else None,
                "memory_ratio": (
                    _ratio(a.get("peak_mib"), b.get("peak_mib")) if ok(a) and ok(b) else None
                ),
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
    failed = {r["case"]: r for r in results if r["path"] == "optimised" and r["status"] != "ok"}
    checks: list[dict[str, Any]] = []

    def check(name: str, measured: float | None, goal: str, passed: bool | None) -> None:
        checks.append({"target": name, "measured": measured, "goal": goal, "pass": passed})

    for case, goal in TARGET_IMG_S.items():
        r = opt.get(case)
        check(
            f"{case} img/s", r and r["img_s"], f">= {goal:g}", r is not None and r["img_s"] >= goal
        )
    for case, goal in TARGET_PEAK_GIB.items():
        r = opt.get(case)
        gib = r["peak_mib"] / 1024 if r else None
        ok = r is not None and gib <= goal
        if case in failed:
            gib, ok = None, False
        check(f"{case} peak GiB", gib, f"<= {goal:.1f}", ok)
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
        check("epoch 8k+2k @160, compute only (s)", epoch, f"<= {TARGET_EPOCH_S:g}", epoch <= 20)
    return checks


def print_targets(checks: list[dict[str, Any]]) -> None:
    print("\ntargets (one H200; reference code there: see docs/BENCHMARKS.md)")
    for c in checks:
        verdict = {True: "PASS", False: "FAIL", None: "-"}[c["pass"]]
        measured = _fmt(c["measured"], ".2f")
        print(f"  {c['target']:<40}{measured:>10}  goal {c['goal']:<10} {verdict}")


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


# --- CLI -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ttsr.bench",
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
    p.add_argument("--packed", type=int, default=0, metavar="N", help="N concurrent trials")
    p.add_argument("--packed-case", help="case for --packed (default: the first rec case)")
    p.add_argument("--ablate", action="store_true", help="add one optimisation at a time")
    p.add_argument("--no-compare", action="store_true", help="skip the reference/optimised table")
    p.add_argument("--json", type=Path, help="write all results here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p


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
    changes = {}
    if args.warmup is not None:
        changes["warmup"] = args.warmup
    if args.steps is not None:
        changes["steps"] = args.steps
    return [replace(c, **changes) for c in cases]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child is not None:
        result = run_job(_job_from_json(args.child), fresh_process=True)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device: cuda requested but torch.cuda.is_available() is False")
    device = torch.device(args.device)
    preset_name = (
        "quick" if args.quick else args.preset or ("gpu" if device.type == "cuda" else "cpu")
    )
    preset = PRESETS[preset_name]
    n_feats = args.n_feats or preset.n_feats
    blocks = args.blocks or preset.blocks
    try:
        ModelConfig.from_string(blocks, n_feats=n_feats)
    except ValueError as exc:
        raise SystemExit(f"--n-feats/--blocks: {exc}") from None
    for flag in ("warmup", "steps"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag == "warmup" else 1):
            raise SystemExit(f"--{flag}: must be >= {0 if flag == 'warmup' else 1}, got {value}")
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"--threads: must be >= 1, got {args.threads}")
    # On a small shared CPU, >1 intra-op thread makes every OpenMP barrier wait for a thread the
    # OS descheduled: measured 13x slower steps at load 12 on 2 cores. One thread is stable.
    threads = args.threads if args.threads is not None else (1 if device.type == "cpu" else None)
    if threads is not None:
        torch.set_num_threads(threads)
    if args.packed < 0:
        raise SystemExit(f"--packed: must be >= 0, got {args.packed}")
    cases = _select_cases(preset, args.cases, args)
    isolate = (
        args.isolate if args.isolate != "auto" else ("process" if device.type == "cpu" else "none")
    )
    opt = optimised(device, compile=args.compile)
    env = environment(device)

    def job(case: Case, settings: PathSettings, path: str) -> Job:
        return Job(case, settings, path, device.type, n_feats, blocks, threads=threads)

    def execute(j: Job) -> dict[str, Any]:
        r = run_isolated(j) if isolate == "process" else run_job(j)
        r.update(size=j.case.size, batch=j.case.batch, losses=j.case.losses)
        return r

    print(
        f"ttsr.bench | preset {preset_name} | device {env.get('gpu', env['device'])} | "
        f"torch {env['torch']} | model n_feats {n_feats}, blocks {blocks} | "
        f"isolate {isolate} | {env['date']}"
    )
    print(f"(a) reference: {REFERENCE}\n(b) optimised: {opt}\n", flush=True)
    report: dict[str, Any] = {
        "environment": env,
        "preset": preset_name,
        "model": {"n_feats": n_feats, "blocks": blocks},
        "isolate": isolate,
        "settings": {"reference": asdict(REFERENCE), "optimised": asdict(opt)},
        "cases": [asdict(c) for c in cases],
        "results": [],
    }

    if not args.no_compare:
        for case in cases:
            if case.reference:
                report["results"].append(execute(job(case, REFERENCE, "reference")))
            else:
                report["results"].append(
                    {"case": case.name, "path": "reference", "status": "skipped (cannot fit)"}
                )
            report["results"].append(execute(job(case, opt, "optimised")))
            r = report["results"][-1]
            print(f"  done {case.name}: optimised {r['status']}", flush=True)
        print()
        report["ratios"] = print_comparison(cases, report["results"])

    packed = None
    if args.packed:
        name = args.packed_case or next((c.name for c in cases if c.losses == "rec"), cases[0].name)
        case = next((c for c in _select_cases(preset, name, args)), None)
        packed = run_packed(job(case, opt, "optimised"), args.packed)
        report["packed"] = packed
        per = ", ".join(f"{v:.1f}" for v in packed.get("per_trial_img_s", []))
        print(
            f"\npacked: {args.packed} trials of {case.name} (optimised) at once: "
            f"aggregate {_fmt(packed.get('aggregate_img_s'), '.2f')} img/s "
            f"(per trial {per or '-'}; status {packed['status']})"
        )

    if args.ablate:
        ablate_cases = cases if args.cases else [next(c for c in cases if c.losses == "rec")]
        report["ablation"] = []
        for case in ablate_cases:
            rows = [
                execute(job(case, s, label)) for label, s in ablation_steps(compile=args.compile)
            ]
            report["ablation"].extend(rows)
            print_ablation(case, rows)

    if device.type == "cuda" and preset_name == "gpu":
        report["targets"] = target_checks(report["results"], packed)
        print_targets(report["targets"])
    elif not args.no_compare:
        print(
            "\n(targets are for the gpu preset on an H200: run scripts/gpu_check.sh on a GPU; "
            "CPU ratios are not comparable)"
        )

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")
    failed = [r for r in report["results"] if r["status"].startswith("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
