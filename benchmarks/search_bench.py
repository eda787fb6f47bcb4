"""Micro-benchmark of the relevance search: dense vs chunked vs fused, time and peak memory.

    python benchmarks/search_bench.py --device cuda              # 160x8, 512x8, 1024x1
    python benchmarks/search_bench.py --device cpu --cases 160x1 --variants dense chunked
    python benchmarks/search_bench.py --device cpu --cases 32x1  # fused: Triton's interpreter

A case "SIZExBATCH": the HR/reference side in pixels and the batch. The search runs on level-3
features (256 channels) of LR↑ and Ref↓↑: (SIZE/4)² query and reference positions, 3×3 patches
of 2304 values (160x8: the 160-px training step). Each method runs `ttsr.search.relevance_search`
as training calls it (forward, no autograd; unfold + normalise included).

Time: median of --repeat calls after --warmup calls (the fused kernel compiles and autotunes in
the warm-up). Peak memory: on CUDA, the allocator's peak above what was allocated before the
call; on the CPU, the growth of the process's peak RSS during the call. "agree": the share of
query positions whose index equals the first method's, "max|dS|": the largest difference of S
from it. On the CPU the fused kernel runs in Triton's interpreter, only meant for tiny sizes.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's ttsr

from ttsr.search import relevance_search  # noqa: E402

CHANNELS = 256  # VGG relu3_1
DTYPES = {"fp32": None, "bf16": torch.bfloat16}
CASES = [(160, 8), (512, 8), (1024, 1)]  # (size, batch)
DEFAULT_VARIANTS = ["dense", "chunked", "chunked-bf16", "fused", "fused-bf16"]


@dataclass
class Result:
    case: str
    variant: str
    device: str
    queries: int  # per image
    ms: float | None
    peak_mib: float | None
    agree: float | None = None
    max_ds: float | None = None
    note: str = ""


def parse_case(text: str) -> tuple[int, int]:
    size, _, batch = text.partition("x")
    size_px, batch_n = int(size), int(batch or 1)
    if size_px % 4 or size_px < 4 or batch_n < 1:
        raise argparse.ArgumentTypeError(f"case {text!r}: want SIZExBATCH, SIZE a multiple of 4")
    return size_px, batch_n


def inputs(size: int, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    side = size // 4
    query = torch.randn(batch, CHANNELS, side, side, generator=g)
    # a reference that resembles the query (as Ref↓↑ resembles LR↑), plus noise
    key = query.roll(shifts=(1, 2), dims=(2, 3)) + 0.5 * torch.randn(query.shape, generator=g)
    return query.to(device), key.to(device)


def search(variant: str, query: torch.Tensor, key: torch.Tensor):
    method, _, dtype = variant.partition("-")
    with torch.no_grad():
        return relevance_search(query, key, method=method, dtype=DTYPES[dtype or "fp32"])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_variant(variant, query, key, *, warmup: int, repeat: int) -> tuple[float, tuple]:
    times = []
    for _ in range(warmup + repeat):
        start = time.perf_counter()
        out = search(variant, query, key)
        sync(query.device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times[warmup:]), out


def cuda_peak_mib(variant, query, key) -> float:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    search(variant, query, key)  # the peak is a high-water mark: it outlives the result
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _status_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+)", Path("/proc/self/status").read_text(), re.M)[1])


def cpu_peak_mib(variant, query, key) -> float | None:
    """Peak RSS growth during one search (Linux: clear_refs "5" resets the high-water mark).

    Free memory that the allocator keeps (from the timed calls) is handed back first, or the
    search would reuse it without raising the RSS.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    base = _status_kib("VmRSS")
    search(variant, query, key)  # the peak is a high-water mark: it outlives the result
    return (_status_kib("VmHWM") - base) / 1024


def run(args: argparse.Namespace) -> list[Result]:
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    results: list[Result] = []
    for size, batch in args.cases:
        case = f"{size}x{batch}"
        query, key = inputs(size, batch, device)
        baseline = None
        dense_gib = batch * (size // 4) ** 4 * 4 / 2**30  # the dense relevance matrix R, fp32
        too_big_to_interpret = device.type == "cpu" and size > args.max_interpret_size
        for variant in args.variants:
            row = Result(case, variant, str(device), (size // 4) ** 2, None, None)
            if variant == "dense" and dense_gib > args.dense_limit_gib:
                row.note = f"skipped: R would take {dense_gib:.0f} GiB"
            elif variant.startswith("fused") and too_big_to_interpret:
                row.note = "skipped: the CPU runs the fused kernel in Triton's interpreter"
            else:
                row.ms, (S, index) = time_variant(
                    variant, query, key, warmup=args.warmup, repeat=args.repeat
                )
                peak_mib = cuda_peak_mib if device.type == "cuda" else cpu_peak_mib
                row.peak_mib = peak_mib(variant, query, key)
                if baseline is None:
                    baseline = (variant, S, index)
                else:
                    row.agree = (index == baseline[2]).float().mean().item()
                    row.max_ds = (S.float() - baseline[1].float()).abs().max().item()
                    row.note = f"vs {baseline[0]}"
                del S, index
            results.append(row)
            print(format_row(row), flush=True)
        del query, key
    return results


def format_row(r: Result) -> str:
    ms = f"{r.ms:10.2f}" if r.ms is not None else f"{'-':>10}"
    mib = f"{r.peak_mib:10.1f}" if r.peak_mib is not None else f"{'-':>10}"
    agree = f"{100 * r.agree:7.2f}%" if r.agree is not None else f"{'':>8}"
    ds = f"{r.max_ds:9.1e}" if r.max_ds is not None else f"{'':>9}"
    return f"{r.case:>8} {r.variant:>13} {ms} {mib} {agree} {ds}  {r.note}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cases", nargs="+", type=parse_case, default=CASES, metavar="SIZExBATCH")
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=DEFAULT_VARIANTS)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tf32", action="store_true", help="allow tf32 for fp32 matmuls")
    parser.add_argument("--dense-limit-gib", type=float, default=40.0)
    parser.add_argument("--max-interpret-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(
        f"device {name} | torch {torch.__version__} | tf32 {args.tf32} | "
        f"threads {torch.get_num_threads()} | median of {args.repeat} after {args.warmup}"
    )
    header = f"{'case':>8} {'variant':>13} {'ms':>10} {'peak MiB':>10} {'agree':>8} {'max|dS|':>9}"
    print(header)
    results = run(args)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))


if __name__ == "__main__":
    main()
