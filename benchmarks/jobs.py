"""Running one timed run (a `Job`) here, in a fresh child process, or packed with copies of it.

A child is `python -m benchmarks.train_step --child JOB_JSON`, started in the repository root
(`benchmarks` is not installed); it prints one `RESULT_PREFIX` line with its result. On the CPU
every run gets its own child (`--isolate process`, the CPU default) so that its peak RSS is its
own. Packed trials (`run_packed`) are N such children on one device that start their timed steps
together (a file barrier); aggregate images/s = all timed images / the span from the first start
to the last end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.configs import Case
from benchmarks.timing import run_case
from ttsr.config import TrainConfig

RESULT_PREFIX = "BENCH_RESULT "
ROOT = Path(__file__).resolve().parents[1]  # where `python -m benchmarks...` finds the package


@dataclass(frozen=True)
class Job:
    case: Case
    config: TrainConfig
    path: str  # label: "reference", "optimised" or an ablation step
    threads: int | None = None  # torch intra-op threads in the process that runs it
    barrier: tuple[str, int, int] | None = None  # (dir, rank, count) for packed trials


def run_job(job: Job, *, fresh_process: bool = False) -> dict[str, Any]:
    if job.threads is not None:
        torch.set_num_threads(job.threads)
    result = run_case(job.case, job.config, barrier=job.barrier, fresh_process=fresh_process)
    result["path"] = job.path
    return result


def job_to_json(job: Job) -> str:
    return json.dumps(
        {
            "case": asdict(job.case),
            "config": job.config.to_dict(),
            "path": job.path,
            "threads": job.threads,
            "barrier": job.barrier,
        }
    )


def job_from_json(text: str) -> Job:
    d = json.loads(text)
    case = {**d["case"], "changes": tuple(tuple(c) for c in d["case"]["changes"])}
    return Job(
        case=Case(**case),
        config=TrainConfig.from_dict(d["config"]),
        path=d["path"],
        threads=d["threads"],
        barrier=tuple(d["barrier"]) if d["barrier"] is not None else None,
    )


def child_main(text: str) -> int:
    """`--child`: run the job in this (fresh) process and print its result line."""
    result = run_job(job_from_json(text), fresh_process=True)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


def _child_command(job: Job) -> list[str]:
    return [sys.executable, "-m", "benchmarks.train_step", "--child", job_to_json(job)]


def _parse_child(job: Job, returncode: int, out: str, err: str) -> dict[str, Any]:
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    why = "killed (out of memory?)" if returncode in (-9, 137) else "failed"
    last = (err.strip().splitlines() or ["no output"])[-1][:300]
    return {
        "case": job.case.name,
        "path": job.path,
        "status": f"error: child {why} (rc {returncode}): {last}",
    }


def run_isolated(job: Job, timeout: float | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        _child_command(job), capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    return _parse_child(job, proc.returncode, proc.stdout, proc.stderr)


def run_packed(job: Job, count: int) -> dict[str, Any]:
    """``count`` concurrent trial processes of ``job`` on one device; aggregate images/s."""
    with tempfile.TemporaryDirectory(prefix="ttsr-bench-") as barrier:
        jobs = [replace(job, barrier=(barrier, i, count)) for i in range(count)]
        procs = [
            subprocess.Popen(
                _child_command(j),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            for j in jobs
        ]
        trials = []
        for j, p in zip(jobs, procs, strict=True):
            out, err = p.communicate()
            trials.append(_parse_child(j, p.returncode, out, err))
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
