"""`python -m benchmarks.profile_step`: where a training step's CPU time goes, by part of the model.

Builds the trainer of the benchmark's reference path (a) and optimised path (b) for one case
(`benchmarks.configs`), runs `--warmup` steps, then one step under `torch.profiler`, and prints
each region's self CPU time (`labelled`; "other": the step's own glue), forward and backward
apart.

How ops are attributed: forward ops to the innermost labelled region they ran in (module hooks
and wrappers open `record_function` ranges; the bicubic upsamplings are counted on their own,
out of the MainNet part that calls them); backward ops to the region of the forward op that
made them (autograd's sequence number links the two). CPU time, one thread: robust on a shared
machine (see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from itertools import cycle
from typing import Any
from unittest.mock import patch

import torch
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

import ttsr.model
import ttsr.train.step
from benchmarks.configs import PRESETS, reference_config, study_config
from benchmarks.timing import LoopSteps, build, random_batch

PREFIX = "ttsr:"  # marks the ranges this tool opens
AUTOGRAD_ENGINE = "autograd::engine::evaluate_function"
MAINNET_PARTS = ("SFE", "ex12", "ex123", "merge_tail")
WRAPPED = {  # module-level functions that get a range of their own: (module, name) -> label
    (ttsr.model, "bicubic"): "bicubic upsampling",
    (ttsr.model, "relevance_search"): "search",
    (ttsr.model, "dense_relevance_search"): "search",
    (ttsr.model, "transfer"): "transfer",
    (ttsr.model, "dense_transfer"): "transfer",
    (ttsr.model, "_group"): "MainNet residual groups",
    (ttsr.train.step, "transferal_perceptual_loss"): "loss: transferal perceptual",
    (ttsr.train.step, "gradient_penalty"): "critic: gradient penalty",
}


def _ranged(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with record_function(PREFIX + label):
            return fn(*args, **kwargs)

    return wrapper


@contextmanager
def labelled(trainer: Any) -> Iterator[None]:
    """Open a labelled range around each region of the step while inside."""
    ranges: list[Any] = []
    lte = cycle(("LTE(LR_up)", "LTE(Ref_downup)", "LTE(Ref)"))

    def pre(label: str | Callable[[], str]) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            name = label() if callable(label) else label
            ranges.append(record_function(PREFIX + name).__enter__())

        return hook

    def post(*_: Any) -> None:
        ranges.pop().__exit__(None, None, None)

    model = trainer.model
    hooked = [(model.LTE, lambda: next(lte)), (model.LTE_copy, "loss: transferal perceptual")]
    hooked += [(getattr(model.MainNet, n), f"MainNet {n}") for n in MAINNET_PARTS]
    hooked += [(trainer.perceptual, "loss: perceptual (VGG19)"), (trainer.discriminator, "critic")]
    wrapped = {(model.MainNet, n): "MainNet texture fusion" for n in ("_fuse1", "_fuse2", "_fuse3")}
    wrapped[trainer.step, "rec_loss"] = "loss: reconstruction"  # an attribute bound at build
    with ExitStack() as stack:  # hooks removed, patched attributes restored on the way out
        for module, label in hooked:
            if module is not None:
                stack.callback(module.register_forward_pre_hook(pre(label)).remove)
                stack.callback(module.register_forward_hook(post).remove)
        for (owner, name), label in {**wrapped, **WRAPPED}.items():
            stack.enter_context(patch.object(owner, name, _ranged(label, getattr(owner, name))))
        yield


def _ancestors(event: Any) -> Iterator[Any]:
    node = event
    while node is not None:
        yield node
        node = node.cpu_parent


def _region(event: Any) -> str | None:
    """The innermost labelled range around ``event`` (None: outside every range)."""
    names = (n.name for n in _ancestors(event))
    return next((n.removeprefix(PREFIX) for n in names if n.startswith(PREFIX)), None)


def attribute(events: list[Any]) -> dict[str, list[float]]:
    """region -> [forward s, backward s] of self CPU time."""
    by_seq: dict[int, str] = {}
    for e in events:
        region = _region(e)
        if region is not None and e.sequence_nr >= 0 and not e.name.startswith("autograd::"):
            by_seq.setdefault(e.sequence_nr, region)
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for e in events:
        if e.name.startswith(PREFIX):
            continue
        seconds = e.self_cpu_time_total / 1e6
        chain = list(_ancestors(e))
        call = next((n for n in chain if n.name.startswith(AUTOGRAD_ENGINE)), None)
        if call is not None:  # inside an autograd engine call: a backward op
            totals[by_seq.get(call.sequence_nr, "other")][1] += seconds
        elif any(n.name.startswith("Optimizer.step") for n in chain):
            totals["optimiser step"][0] += seconds
        else:
            totals[_region(e) or "other"][0] += seconds
    return dict(totals)


def profile_path(case: Any, config: Any, warmup: int) -> tuple[dict[str, list[float]], float]:
    trainer = build(config)
    steps = LoopSteps(trainer, random_batch(case, torch.device(config.device)))
    steps.run(warmup)
    with labelled(trainer), profile(activities=[ProfilerActivity.CPU]) as prof:
        steps.run(1)
    events = list(prof.events())
    return attribute(events), sum(e.self_cpu_time_total for e in events) / 1e6


def print_table(title: str, totals: dict[str, list[float]], total: float) -> None:
    print(f"\n{title}: {total:.2f} s of self CPU time in one step")
    print(f"{'region':<34}{'forward s':>10}{'backward s':>11}{'total s':>9}{'share':>8}")
    for name, (fwd, bwd) in sorted(totals.items(), key=lambda kv: -sum(kv[1])):
        print(f"{name:<34}{fwd:>10.3f}{bwd:>11.3f}{fwd + bwd:>9.3f}{(fwd + bwd) / total:>8.1%}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_step", description=__doc__)
    p.add_argument("--preset", default="cpu-full", choices=sorted(PRESETS))
    p.add_argument("--quick", action="store_true", help="same as --preset quick")
    p.add_argument("--case", help="a case of the preset (default: its first)")
    p.add_argument("--path", default="both", choices=("both", "reference", "optimised"))
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    preset = PRESETS["quick" if args.quick else args.preset]
    cases = {c.name: c for c in preset.cases}
    if args.case is not None and args.case not in cases:
        raise SystemExit(f"--case: unknown {args.case}; known: {', '.join(cases)}")
    case = cases[args.case] if args.case else preset.cases[0]
    torch.set_num_threads(args.threads)
    config = study_config(case, device="cpu", n_feats=preset.n_feats, blocks=preset.blocks)
    paths = {"reference": reference_config(config), "optimised": config}
    for name, cfg in paths.items():
        if args.path in ("both", name):
            totals, total = profile_path(case, cfg, args.warmup)
            print_table(f"{case.name}, {name} path", totals, total)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
