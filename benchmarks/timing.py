"""Timing one (case, config): the trainer `ttsr.train` builds, stepped the way its loop steps.

Data: one random loader-shaped batch made on the device once (as the reference figures in
docs/BENCHMARKS.md); `Trainer.inputs` converts it every step, as it does a loader batch.
Timing: `warmup` untimed steps (`warmup_s`: with compile, the compile of a trial), then `steps`
timed steps between two device synchronisations. `host_ms`: the host's time to issue a timed
step; on CUDA, close to the step time = bound by Python and kernel launches (where CUDA graphs or
compile would help), small = the GPU is the limit. Peak memory: on CUDA
`torch.cuda.max_memory_allocated` (reset before the build); on the CPU, in a fresh process only,
the peak RSS (`ru_maxrss`) minus the RSS just before the build.
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from benchmarks.configs import Case
from ttsr import names
from ttsr.config import TrainConfig
from ttsr.train.early_stopping import LossSpikeMonitor
from ttsr.train.loop import LossMeter
from ttsr.train.trainer import IMAGE_KEYS, Trainer, build_trainer

MIB = 2**20


def build(config: TrainConfig) -> Trainer:
    """The benchmark's one way to a trainer: the training builder, with random VGG19 weights
    (speed does not depend on them; nothing is looked up on disk)."""
    return build_trainer(config, load_vgg=False)


def random_batch(case: Case, device: torch.device) -> dict[str, Tensor]:
    """A loader batch (LR, LR_up, HR, Ref, Ref_downup), uniform in [-1, 1], on ``device``."""
    g = torch.Generator(device=device).manual_seed(0)
    small = (case.batch, 3, case.size // 4, case.size // 4)
    large = (case.batch, 3, case.size, case.size)
    shapes = dict(zip(IMAGE_KEYS, (small, large, large, large, large), strict=True))
    return {k: torch.rand(s, generator=g, device=device) * 2 - 1 for k, s in shapes.items()}


class LoopSteps:
    """What `ttsr/train/loop.py` runs per batch, on one fixed batch: `Trainer.train_step`,
    `LossMeter.add`, and every `Trainer.check_every` steps `LossMeter.check` (the one host read).
    ``infer``: `Trainer.infer` instead, as validation runs it (it reads its sums once per pass)."""

    def __init__(self, trainer: Trainer, batch: dict[str, Tensor], *, infer: bool = False):
        self.trainer, self.batch, self.infer = trainer, batch, infer
        spikes = LossSpikeMonitor(trainer.config.spike_factor)
        self.meter = LossMeter(trainer.device, spikes, check_every=trainer.check_every)
        self.sr_sum = torch.zeros((), device=trainer.device)
        self.done = 0  # steps run
        self.diverged: str | None = None  # what training would have stopped on (we go on)

    def run(self, n: int) -> None:
        for _ in range(n):
            self.step(self.batch)

    def step(self, batch: dict[str, Tensor]) -> None:
        """One iteration of the loop's batch loop (`ttsr/train/loop.py`), without the stop."""
        self.done += 1
        if self.infer:
            self.sr_sum += self.trainer.infer(batch).mean()
            return
        meter = self.meter
        meter.add(self.trainer.train_step(batch), images=len(batch["HR"]))
        if meter.steps % meter.check_every == 0:
            problem = meter.check(meter.steps)  # (signal, reason) or None
            self.diverged = self.diverged or (problem[1] if problem else None)

    def mean_loss(self) -> float:
        """Mean total loss over every step run (infer: mean SR value); reads the device."""
        if self.infer:
            return float(self.sr_sum) / max(self.done, 1)
        return self.meter.means()[names.LOSS_TOTAL]


def run_case(
    case: Case,
    config: TrainConfig,
    *,
    barrier: tuple[str, int, int] | None = None,
    fresh_process: bool = False,
) -> dict[str, Any]:
    """Time ``case`` under ``config``; a JSON-able result with status 'ok' or 'oom'.

    fresh_process: this process ran nothing before (the CPU peak RSS is then meaningful).
    """
    device = torch.device(config.device)
    result: dict[str, Any] = {"case": case.name, "status": "ok"}
    _free(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = _rss_bytes()
    try:
        steps = LoopSteps(build(config), random_batch(case, device), infer=case.losses == "infer")
        result.update(_timed(case, steps, device, barrier))
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
        steps = None  # free the model and optimiser state before the next run
        _free(device)
    return result


def _timed(
    case: Case, steps: LoopSteps, device: torch.device, barrier: tuple[str, int, int] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {"check_every": steps.meter.check_every}
    start = time.perf_counter()
    steps.run(case.warmup)
    _sync(device)
    out["warmup_s"] = time.perf_counter() - start  # with compile: the compile cost of a trial
    if device.type == "cuda":
        out["host_syncs_per_step"] = count_host_syncs(lambda: steps.run(1))
    _sync(device)
    if barrier is not None:
        wait_barrier(*barrier)
    wall_start = time.time()
    t0, cpu0 = time.perf_counter(), time.process_time()
    steps.run(case.steps)
    issued = time.perf_counter() - t0
    _sync(device)
    elapsed = time.perf_counter() - t0
    out.update(
        step_ms=1e3 * elapsed / case.steps,
        # CPU seconds of this process per step: on a shared CPU with one compute thread, the
        # work a step takes, whatever else runs (wall time also counts the waits for a core).
        cpu_ms=1e3 * (time.process_time() - cpu0) / case.steps,
        # CUDA: the host's time to issue a step; close to step_ms = launch-bound (CPU-side).
        host_ms=1e3 * issued / case.steps,
        img_s=case.batch * case.steps / elapsed,
        images=case.batch * case.steps,
        wall_start=wall_start,
        wall_end=time.time(),
        mean_loss=steps.mean_loss(),
    )
    if steps.diverged is not None:
        out["diverged"] = steps.diverged
    return out


def count_host_syncs(fn: Callable[[], Any]) -> int:
    """How many synchronising CUDA calls ``fn`` makes (torch's sync debug mode, as warnings)."""
    _sync(torch.device("cuda"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def wait_barrier(barrier: str, rank: int, count: int, timeout: float = 600.0) -> None:
    """File barrier so that packed trials start their timed steps together."""
    Path(barrier, f"ready-{rank}").touch()
    deadline = time.monotonic() + timeout
    while len(list(Path(barrier).glob("ready-*"))) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"packed trial {rank}: other trials never became ready")
        time.sleep(0.01)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_interleaved(case: Case, configs: list[tuple[str, TrainConfig]]) -> list[dict[str, Any]]:
    """Time ``configs`` (label, config) on ``case`` in one process, one step of each in turn.

    For a busy machine: the load that slows one path's step slows its neighbour's too, so the
    ratio of the per-path medians is stable where back-to-back runs are not. Rounds alternate
    the order (ABBA...), so a drift in load favours neither. Memory is not measured (one
    process holds all of them).
    """
    device = torch.device(configs[0][1].device)
    runs = []
    for label, config in configs:
        steps = LoopSteps(build(config), random_batch(case, device), infer=case.losses == "infer")
        start = time.perf_counter()
        steps.run(case.warmup)
        _sync(device)
        runs.append((label, steps, time.perf_counter() - start, []))
    for round_ in range(case.steps):
        for _, steps, _, times in runs if round_ % 2 == 0 else runs[::-1]:
            t0, cpu0 = time.perf_counter(), time.process_time()
            steps.run(1)
            _sync(device)
            times.append((time.perf_counter() - t0, time.process_time() - cpu0))
    results = []
    for label, steps, warmup_s, times in runs:
        median = statistics.median(wall for wall, _ in times)
        results.append(
            {
                "case": case.name,
                "path": label,
                "status": "ok",
                "check_every": steps.meter.check_every,
                "warmup_s": warmup_s,
                "step_ms": 1e3 * median,
                "step_ms_each": [1e3 * wall for wall, _ in times],
                "cpu_ms": 1e3 * statistics.median(cpu for _, cpu in times),
                "cpu_ms_each": [1e3 * cpu for _, cpu in times],
                "img_s": case.batch / median,
                "images": case.batch * case.steps,
                "mean_loss": steps.mean_loss(),
                "timing": "interleaved, median step",
            }
        )
    return results
