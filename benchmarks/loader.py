"""`python -m benchmarks.loader`: training items per second through a DataLoader (the training
split with augmentation, as training reads it), and where an item's time goes.

    python -m benchmarks.loader --data data/ffhq --sizes 160 --workers 0 4 8 --seconds 4
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from ttsr.data.dataset import ShardDataset
from ttsr.data.images import bicubic
from ttsr.data.source import open_dataset
from ttsr.errors import DataError


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


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)  # like a DataLoader worker; measures one core
    print(
        f"cores: {os.cpu_count()}, batch {args.batch_size}, ref_mode {args.ref_mode}, "
        f"train split with augmentation, {args.seconds:g} s per point"
    )
    for size in args.sizes:
        ds = open_dataset(args.data, size=size, split="train", ref_mode=args.ref_mode)
        line = f"size {size} ({len(ds)} items)"
        if isinstance(ds, ShardDataset):
            st = stage_times(ds)
            line += (
                f": CPU per item: decode {st.decode:.2f} ms, bicubic resizes {st.resize:.2f} ms,"
                f" item build {st.item:.2f} ms -> {1e3 / (st.decode + st.item):.0f} items/s"
                " per core"
            )
        print(line, flush=True)
        item = ds[0]
        nbytes = sum(v.nbytes for k, v in item.items() if isinstance(v, torch.Tensor))
        dtypes = sorted({str(v.dtype) for v in item.values() if isinstance(v, torch.Tensor)})
        print(
            f"  a batch of {args.batch_size}: {nbytes * args.batch_size / 2**20:.2f} MiB on the "
            f"host ({', '.join(dtypes)}; the model's floats are made on the device)"
        )
        for w in args.workers:
            rate = loader_throughput(
                ds, workers=w, seconds=args.seconds, batch_size=args.batch_size
            )
            per_cpu = f" ({rate.per_cpu:.0f} per CPU-second)" if w == 0 else ""
            print(f"  workers {w}: {rate.wall:8.1f} samples/s{per_cpu}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.loader",
        description="Training-loader samples/s per worker count.",
    )
    p.add_argument("--data", default=None, help="prepared folder (default: built-in sample)")
    p.add_argument("--sizes", type=int, nargs="+", default=[160, 512])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--ref-mode", default="gt")
    args = p.parse_args(argv)
    try:
        run(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
