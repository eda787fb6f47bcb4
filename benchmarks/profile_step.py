"""`python -m benchmarks.profile_step`: where a training step's CPU time goes, by part of the model.

    python -m benchmarks.profile_step --preset cpu-full --case rec-160-b1          # both paths
    python -m benchmarks.profile_step --quick --case all-32-b2 --path optimised

Builds the trainer of the benchmark's reference path (a) and optimised path (b) for one case
(`benchmarks.configs`), runs `--warmup` steps, then one step under `torch.profiler`, and prints
each region's self CPU time, forward and backward apart: the three LTE passes, the search and
the three transfers, MainNet's parts (SFE, each stage's texture fusion and residual groups,
CSFI2/3, the merge tail), the bicubic upsamplings inside them, the losses, the critic's update,
the optimiser, and what is left ("other": the step's own glue).

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
from contextlib import contextmanager
from typing import Any

import torch
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

import ttsr.model
import ttsr.search
import ttsr.train.step
from benchmarks.configs import PRESETS, reference_config, study_config
from benchmarks.timing import LoopSteps, build, random_batch

PREFIX = "ttsr:"  # marks the ranges this tool opens
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
    handles, saved = [], []
    lte_calls = [0]

    def hook(module: torch.nn.Module, label: str | Callable[[], str]) -> None:
        def pre(*_: Any) -> None:
            name = label() if callable(label) else label
            ranges.append(record_function(PREFIX + name).__enter__())

        def post(*_: Any) -> None:
            ranges.pop().__exit__(None, None, None)

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))

    def lte_label() -> str:
        lte_calls[0] += 1
        return ("LTE(LR_up)", "LTE(Ref_downup)", "LTE(Ref)")[(lte_calls[0] - 1) % 3]

    ranges: list[Any] = []
    model = trainer.model
    hook(model.LTE, lte_label)
    hook(model.LTE_copy, "loss: transferal perceptual")
    for name in MAINNET_PARTS:
        hook(getattr(model.MainNet, name), f"MainNet {name}")
    for name in ("_fuse1", "_fuse2", "_fuse3"):
        fn = getattr(model.MainNet, name)
        saved.append((model.MainNet, name, None))
        setattr(model.MainNet, name, _ranged("MainNet texture fusion", fn))
    if trainer.perceptual is not None:
        hook(trainer.perceptual, "loss: perceptual (VGG19)")
    if trainer.discriminator is not None:
        hook(trainer.discriminator, "critic")
    saved.append((trainer.step, "rec_loss", trainer.step.rec_loss))  # bound at build time
    trainer.step.rec_loss = _ranged("loss: reconstruction", trainer.step.rec_loss)
    for (module, name), label in WRAPPED.items():
        saved.append((module, name, getattr(module, name)))
        setattr(module, name, _ranged(label, getattr(module, name)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for owner, name, value in saved:
            if value is None:
                delattr(owner, name)  # the instance attribute hid the method
            else:
                setattr(owner, name, value)


def _region(event: Any) -> str | None:
    """The innermost labelled range around ``event`` (None: outside every range)."""
    node = event
    while node is not None:
        if node.name.startswith(PREFIX):
            return node.name[len(PREFIX) :]
        node = node.cpu_parent
    return None


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
        node, backward = e, None
        while node is not None:  # inside an autograd engine call: a backward op
            if node.name.startswith("autograd::engine::evaluate_function"):
                backward = by_seq.get(node.sequence_nr, "other")
                break
            node = node.cpu_parent
        if backward is not None:
            totals[backward][1] += seconds
        elif any(n.name.startswith("Optimizer.step") for n in _ancestors(e)):
            totals["optimiser step"][0] += seconds
        else:
            totals[_region(e) or "other"][0] += seconds
    return dict(totals)


def _ancestors(event: Any) -> Iterator[Any]:
    node = event
    while node is not None:
        yield node
        node = node.cpu_parent


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
