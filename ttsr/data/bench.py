"""Loader throughput: training items per second through a DataLoader, and where the time goes."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from ttsr.data.dataset import ShardDataset
from ttsr.data.images import bicubic


@dataclass(frozen=True)
class StageTimes:
    """CPU milliseconds per item in one thread (CPU time, not wall: robust to a busy machine)."""

    decode: float  # shard read + PNG decode of one image
    resize: float  # the PIL bicubic resizes (LR, LR_up; Ref_downup reuses LR_up in 'gt' mode)
    item: float  # the whole item minus decoding: resizes, augmentation, float tensors


def stage_times(dataset: ShardDataset, n: int = 64) -> StageTimes:
    idx = [i % len(dataset) for i in range(n)]
    clock = time.thread_time
    t0 = clock()
    images = [dataset.image(i) for i in idx]
    t1 = clock()
    s = dataset.size
    for img in images:
        bicubic(bicubic(img, s // 4), s)
    t2 = clock()
    for i, img in zip(idx, images, strict=True):
        dataset._build(i, 0, img, None)
    t3 = clock()
    return StageTimes(*(1e3 * t / n for t in (t1 - t0, t2 - t1, t3 - t2)))


@dataclass(frozen=True)
class Throughput:
    wall: float  # samples per wall-clock second
    per_cpu: float  # samples per CPU second of this process (the per-core rate; 0 workers only)


def loader_throughput(
    dataset: torch.utils.data.Dataset, *, workers: int, seconds: float, batch_size: int = 8
) -> Throughput:
    """Samples per second of a shuffled DataLoader, after its first batch (worker start-up)."""
    loader = DataLoader(
        dataset,
        batch_size=min(batch_size, len(dataset)),  # drop_last must leave at least one batch
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
    )
    count, start, cpu_start, epoch = 0, None, 0.0, 0
    while True:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)  # workers got a copy; only matters for 0 workers
        for batch in loader:
            if start is None:
                start, cpu_start = time.perf_counter(), time.process_time()
                continue
            count += batch["HR"].shape[0]
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                cpu = time.process_time() - cpu_start
                return Throughput(count / elapsed, count / cpu if workers == 0 else 0.0)
        epoch += 1
