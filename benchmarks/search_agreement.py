"""`python -m benchmarks.search_agreement CHECKPOINT`: does a TF32 or bf16 relevance search pick
the same reference patches as the fp32 one, on a trained model's features?

For each test image of the data (the built-in sample set by default) at ``--size``, the
checkpoint's LTE gives the level-3 features of LR↑ (queries) and Ref↓↑ (keys), as in training.
The search then runs in fp32 and in the three `VARIANTS`, each emulated on the CPU with the
rounding its kernel applies. Printed: the share of query positions whose argmax agrees with
fp32, and for those that differ how much less relevant the other pick is in fp32 (cosine of the
fp32 winner minus cosine of the pick: near 0 = an almost equally relevant patch).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from ttsr.checkpoint import load_model
from ttsr.data import open_dataset
from ttsr.data.items import to_model_range
from ttsr.search import relevance_search


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(F.unfold(x.float(), kernel_size=3, padding=1), dim=1)  # (N, D, HW)


def _tf32(x: torch.Tensor) -> torch.Tensor:
    """fp32 rounded to TF32's 10 mantissa bits (round to nearest), as tensor cores read it."""
    bits = x.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


# How each variant computes the relevances, from the unit patches q (N, D, HW), k (N, D, HrWr).
VARIANTS = {
    # the CUDA default: fp32 search with TF32 tensor cores (`fast_kernels`), fp32 sums
    "tf32 (the CUDA default)": lambda q, k: torch.bmm(_tf32(k.transpose(1, 2)), _tf32(q)),
    # `search_dtype: bf16` on the chunked path (the CPU's): bf16 matmul, bf16 output
    "chunked bf16 (bf16 products rounded to bf16)": lambda q, k: torch.bmm(
        k.transpose(1, 2).bfloat16(), q.bfloat16()
    ).float(),
    # the fused kernel with bf16 inputs (CUDA): bf16 operands, fp32 products and sums
    "fused bf16 (bf16 inputs, fp32 sums)": lambda q, k: torch.bmm(
        k.transpose(1, 2).bfloat16().float(), q.bfloat16().float()
    ),
}


@torch.no_grad()
def agreement(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, tuple]:
    """variant -> (agreeing positions, positions, relevance deficits of the others)."""
    _, _, query = model.LTE((to_model_range(batch["LR_up"]) + 1) / 2)
    _, _, key = model.LTE((to_model_range(batch["Ref_downup"]) + 1) / 2)
    best, index = relevance_search(query, key, method="chunked")
    q, k = _unit(query), _unit(key)
    out = {}
    for name, relevance in VARIANTS.items():
        picked_index = relevance(q, k).max(dim=1).indices  # the first maximum, as the kernels
        same = index == picked_index
        # the fp32 relevance of the bf16 pick
        picked = torch.gather(k, 2, picked_index.unsqueeze(1).expand(-1, k.shape[1], -1))
        deficit = best - (picked * q).sum(dim=1)
        out[name] = (int(same.sum()), same.numel(), deficit[~same].tolist())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.search_agreement", description=__doc__)
    p.add_argument("checkpoint", help="model.pt, a training checkpoint dir, or a reference .pt")
    p.add_argument("--data", help="prepared data folder (default: the built-in sample set)")
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--ref-mode", default="gt")
    p.add_argument("--limit", type=int, default=64, help="at most this many test images")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(args.checkpoint)
    data = open_dataset(args.data, size=args.size, split="test", ref_mode=args.ref_mode)
    sums = {name: [0, 0, []] for name in VARIANTS}
    images = min(args.limit, len(data))
    for i in range(images):
        item = data[i]
        batch = {k: item[k].unsqueeze(0) for k in ("LR_up", "Ref_downup")}
        for name, counts in agreement(model, batch).items():
            sums[name] = [s + c for s, c in zip(sums[name], counts, strict=True)]
    total = sums[next(iter(VARIANTS))][1]
    print(
        f"{args.checkpoint} | {images} test images at {args.size} px, ref_mode "
        f"{args.ref_mode} | {total} query positions | argmax agreement with the fp32 search:"
    )
    for name, (agree, total, deficits) in sums.items():
        line = f"  {name}: {100 * agree / total:.2f} %"
        if deficits:
            deficits.sort()
            line += (
                f"; where they differ, the pick's fp32 cosine is lower by median "
                f"{deficits[len(deficits) // 2]:.1e}, max {deficits[-1]:.1e}"
            )
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
