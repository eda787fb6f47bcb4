"""`python -m benchmarks.search_agreement CHECKPOINT`: does a bf16 relevance search pick the same
reference patches as the fp32 one, on a trained model's features?

For each test image of the data (the built-in sample set by default) at ``--size``, the
checkpoint's LTE gives the level-3 features of LR↑ (queries) and Ref↓↑ (keys), as in training;
the search then runs in fp32 and with bf16 matmuls (`search_dtype: bf16`, the chunked path, as
on the CPU; the fused kernel accumulates bf16 products in fp32 on CUDA, which can only agree
better). Printed: the share of query positions whose argmax agrees, and for those that differ
how much less relevant the bf16 choice is under exact fp32 arithmetic (cosine of the fp32
winner minus cosine of the bf16 pick: 0 = an equally relevant patch, a tie broken otherwise).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from ttsr.checkpoint import load_model
from ttsr.data import open_dataset
from ttsr.search import relevance_search


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(F.unfold(x.float(), kernel_size=3, padding=1), dim=1)  # (N, D, HW)


@torch.no_grad()
def agreement(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[int, int, list]:
    """(agreeing positions, positions, relevance deficits of the others) for one batch."""
    _, _, query = model.LTE((batch["LR_up"] + 1) / 2)
    _, _, key = model.LTE((batch["Ref_downup"] + 1) / 2)
    best, index = relevance_search(query, key, method="chunked")
    _, index_bf16 = relevance_search(query, key, method="chunked", dtype=torch.bfloat16)
    same = index == index_bf16
    q, k = _unit(query), _unit(key)  # exact fp32 relevance of the bf16 pick
    picked = torch.gather(k, 2, index_bf16.unsqueeze(1).expand(-1, k.shape[1], -1))
    deficit = best - (picked * q).sum(dim=1)
    return int(same.sum()), same.numel(), deficit[~same].tolist()


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
    agree = total = 0
    deficits: list[float] = []
    for i in range(min(args.limit, len(data))):
        item = data[i]
        batch = {k: item[k].unsqueeze(0) for k in ("LR_up", "Ref_downup")}
        a, n, d = agreement(model, batch)
        agree, total, deficits = agree + a, total + n, deficits + d
    print(
        f"{args.checkpoint} | {min(args.limit, len(data))} test images at {args.size} px, "
        f"ref_mode {args.ref_mode} | {total} query positions"
    )
    print(f"argmax agreement fp32 vs bf16 search: {100 * agree / total:.2f} %")
    if deficits:
        deficits.sort()
        print(
            f"where they differ ({len(deficits)}): the bf16 pick's cosine is lower by "
            f"median {deficits[len(deficits) // 2]:.2e}, max {deficits[-1]:.2e} "
            f"(relevances are cosines in [-1, 1])"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
