"""`python -m benchmarks.self_test`: what the fast paths' self-test (`ttsr.fast_paths`) costs at
a run's start, per check, for a few configs at a real crop size (the seed model, batch of one).

Prints one line per config: the self-test's seconds and each comparison's. On the CPU the
fused search runs only in Triton's interpreter (not a fast path there), so it is left out unless
`--fused-search` is given; on CUDA it includes the kernel's compile and autotune, which the
first training step would otherwise pay.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.configs import Case
from benchmarks.timing import random_batch
from ttsr.config import TrainConfig
from ttsr.fast_paths import self_test
from ttsr.train.trainer import build_trainer

CONFIGS = {
    "default": {},  # on the CPU: fused Adam only; on CUDA: fused search, bf16 + channels_last,
    "bf16": {"amp": "bf16"},
    "bf16+gan": {"amp": "bf16", "adv_w": 0.001},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--repeat", type=int, default=2, help="self-tests per config (best kept)")
    parser.add_argument("--fused-search", action="store_true")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    print(f"self-test cost, {args.device}, {args.size} px, batch 1, torch threads {threads}")
    batch = random_batch(Case("self-test", args.size, 1, "rec", 0, 0), torch.device(args.device))
    for name, changes in CONFIGS.items():
        values = {"device": args.device, "size": args.size, **changes}
        if args.fused_search:
            values["search_method"] = "fused"
        t0 = time.perf_counter()
        trainer = build_trainer(TrainConfig.from_dict(values), load_vgg=False)
        build = time.perf_counter() - t0
        runs = [self_test(trainer, batch, log=lambda line: None)[1] for _ in range(args.repeat)]
        best = min(runs, key=lambda paths: paths.seconds)
        checks = ", ".join(f"{k} {v:.3f} s" for k, v in best.check_seconds.items())
        line = f"self-test {best.seconds:.3f} s ({checks}) | build {build:.1f} s | {best.tag()}"
        print(f"{name:10s} {line}")


if __name__ == "__main__":
    main()
