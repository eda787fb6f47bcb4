"""How a run's DataLoaders are set up: worker count, pinned memory, persistent workers, prefetch.

One rule for the training loader and the validation loaders (`loader_options`), so that a GPU
trial is fed the same way whichever loop reads the data:

- ``num_workers``: the config's value, or when it is None (the default) 0 on the CPU — there the
  step itself uses the cores, and a worker would only take them away from it — and on CUDA the
  CPUs this process may use minus one (the main process launches the kernels), at least 1 and
  at most `MAX_AUTO_WORKERS`. "May use" is the smaller of the CPU affinity mask
  (`os.sched_getaffinity`: containers, taskset) and ``OMP_NUM_THREADS``, which Ray sets to a
  trial's CPU allotment (``cpus_per_trial``), so packed trials do not each start a worker per
  core of the node.
- ``pin_memory`` on CUDA: page-locked batches make the host-to-device copies asynchronous
  (`Trainer.prepare` copies with ``non_blocking=True``).
- ``persistent_workers`` when there are workers: they start once per run instead of once per
  epoch (a worker imports torch and reopens its shard files: seconds each time). Safe because no
  epoch state has to reach a worker: training items are fetched as ``(pass, index)``
  (`ttsr.train.batches`) and test items are the same every epoch.
- ``prefetch_factor`` `PREFETCH_FACTOR` per worker when there are workers: a few batches in
  flight absorb the spread of per-item cost (image decode, resizes) at little memory (a 160-px
  batch of 8 is ~12 MB).
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
    """The automatic worker count for ``cpus`` usable CPUs: 0 on the CPU; on CUDA ``cpus - 1``,
    at most `MAX_AUTO_WORKERS` and at least 1 — with none, PNG decoding would run inside the step
    loop and the GPU would wait for it (a 1-CPU trial time-shares its worker with the main
    process, which mostly waits on the GPU)."""
    if not cuda:
        return 0
    return max(1, min(MAX_AUTO_WORKERS, cpus - 1))


def resolve_num_workers(requested: int | None, device: torch.device) -> int:
    """``requested`` if given, else the automatic count of the module docstring."""
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
