"""A run's DataLoader options (`loader_options`), one rule for the training and validation loaders.

- ``num_workers``: the config's value, or if None `auto_num_workers` of the CPUs this process may
  use: the affinity mask (containers, taskset) capped by ``OMP_NUM_THREADS``, which Ray sets to a
  trial's ``cpus_per_trial``, so packed trials do not each start a worker per core of the node.
- ``pin_memory`` on CUDA: page-locked batches make the copies asynchronous (`Trainer.prepare`
  copies with ``non_blocking=True``).
- ``persistent_workers`` when there are workers: they start once per run, not per epoch (each
  imports torch and reopens its shards: seconds). Safe because no epoch state has to reach a
  worker: training items are fetched as ``(pass, index)`` (`ttsr.train.batches`), test items are
  the same every epoch.
- ``prefetch_factor`` when there are workers: a few batches in flight absorb the spread of
  per-item cost at little memory (a 160-px batch of 8 is ~12 MB).
"""

from __future__ import annotations

import os
from typing import Any

import torch

MAX_AUTO_WORKERS = 8
PREFETCH_FACTOR = 4


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by ``OMP_NUM_THREADS`` if set."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        cpus = min(cpus, int(threads))
    return max(1, cpus)


def auto_num_workers(cpus: int, *, cuda: bool) -> int:
    """0 on the CPU (the step itself uses the cores); on CUDA ``cpus - 1`` (the main process
    launches the kernels), at most `MAX_AUTO_WORKERS` and at least 1: with none, PNG decoding
    would run inside the step loop and the GPU would wait for it."""
    if not cuda:
        return 0
    return max(1, min(MAX_AUTO_WORKERS, cpus - 1))


def resolve_num_workers(requested: int | None, device: torch.device) -> int:
    """``requested`` if given, else the automatic count."""
    if requested is not None:
        return requested
    return auto_num_workers(available_cpus(), cuda=device.type == "cuda")


def loader_options(num_workers: int | None, device: torch.device) -> dict[str, Any]:
    """DataLoader keyword arguments for a run's loaders on ``device``."""
    workers = resolve_num_workers(num_workers, device)
    options: dict[str, Any] = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers > 0:
        options.update(persistent_workers=True, prefetch_factor=PREFETCH_FACTOR)
    return options
