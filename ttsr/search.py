"""Hard-attention relevance search and texture transfer, with memory that grows linearly in area.

The reference computes the full relevance matrix R = K̂ᵀ·Q̂ of shape (HrWr × HW) per image and
unfolds the level-1 reference into 12×12 patches. Both grow quadratically (R) or with a large
constant (12×12 patches = 144 copies of every level-1 pixel), which is why large images ask for
absurd allocations (reference issues #18, #56). Here:

- `relevance_search` scans the reference positions in chunks and keeps a running max/argmax, so
  the largest temporary is one (chunk × HW) block instead of (HrWr × HW). On CUDA it runs the
  fused Triton kernel of `ttsr.fused_search` instead, which keeps every block on chip (no
  relevance values in memory at all); the chunked path stays the reference and the CPU path.
- `transfer` gathers the selected reference patches block by block straight from the feature map
  (index arithmetic instead of unfold/gather/fold); its temporaries are the size of the output.

`dense_relevance_search` and `dense_transfer` are the reference computations, kept for tests,
benchmarks and `search_chunk=0`.

Shapes: N batch, C channels, (H, W) the level-3 grid of the query (LR↑ at ¼ resolution), (Hr, Wr)
the level-3 grid of the reference. Patches are 3×3 with zero padding 1, so there are H·W query
patches and Hr·Wr reference patches, each a C·9 vector.
"""

from __future__ import annotations

import functools
import importlib

import torch
import torch.nn.functional as F
from torch import Tensor

# Auto chunk: the (chunk × HW) relevance block holds at most this many elements (64 Mi floats =
# 256 MiB in fp32). Large enough that small images run in one block (no loop overhead), small
# enough that a 1024-px image (HW = 65536) needs ~1/64 of the dense 16 GiB matrix at a time.
AUTO_BLOCK_ELEMENTS = 64 * 1024 * 1024

SEARCH_METHODS = ("auto", "chunked", "dense", "fused")


def _check_pair(query: Tensor, key: Tensor) -> None:
    if query.dim() != 4 or key.dim() != 4:
        raise ValueError(
            f"query and key must be (N, C, H, W) feature maps, got {tuple(query.shape)} "
            f"and {tuple(key.shape)}"
        )
    if query.shape[:2] != key.shape[:2]:
        raise ValueError(
            f"query {tuple(query.shape)} and key {tuple(key.shape)} differ in batch or channels"
        )


def _unit_patches(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C·9, H·W): 3×3 patches (zero padding 1), each L2-normalised, fp32."""
    return F.normalize(F.unfold(x.float(), kernel_size=3, padding=1), dim=1)


@functools.cache
def fused_available() -> bool:
    """Whether `ttsr.fused_search` imports (Triton installed); it is imported only here."""
    try:
        importlib.import_module("ttsr.fused_search")
    except ImportError:
        return False
    return True


def choose_method(method: str, chunk: int | None, device: torch.device) -> str:
    """Resolve `relevance_search`'s `method` against `chunk` and the device.

    auto: chunk 0 -> dense; an explicit chunk -> chunked; on a CUDA GPU of compute capability
    >= 8.0 with Triton installed -> fused; otherwise chunked.
    """
    if method not in SEARCH_METHODS:
        raise ValueError(f"method must be one of {', '.join(SEARCH_METHODS)}, got {method!r}")
    if chunk is not None and chunk < 0:
        raise ValueError(f"chunk must be None, 0 (dense) or positive, got {chunk}")
    if method == "auto":
        if chunk == 0:
            return "dense"
        if chunk is None and device.type == "cuda" and fused_available():
            if torch.cuda.get_device_capability(device) >= (8, 0):
                return "fused"
        return "chunked"
    if method == "dense" and chunk not in (None, 0):
        raise ValueError(f"chunk={chunk} is for the chunked search, not method='dense'")
    if method == "chunked" and chunk == 0:
        raise ValueError("chunk=0 means the dense search, not method='chunked'")
    if method == "fused":
        if chunk is not None:
            raise ValueError(f"chunk={chunk} is for the chunked search, not method='fused'")
        if not fused_available():
            raise ImportError("method='fused' needs Triton (pip install triton)")
    return method


def auto_chunk(batch: int, num_queries: int) -> int:
    """The number of reference positions per block that keeps a block at AUTO_BLOCK_ELEMENTS."""
    return max(1, AUTO_BLOCK_ELEMENTS // max(1, batch * num_queries))


def dense_relevance_search(query: Tensor, key: Tensor) -> tuple[Tensor, Tensor]:
    """The reference search: materialises R (N, Hr·Wr, H·W) and takes its max over dim 1.

    query (N, C, H, W), key (N, C, Hr, Wr) -> S (N, H·W), index (N, H·W) int64.
    Runs in the input dtype (and under autocast, as the reference does).
    """
    _check_pair(query, key)
    q = F.normalize(F.unfold(query, kernel_size=3, padding=1), dim=1)  # (N, C·9, HW)
    k = F.normalize(F.unfold(key, kernel_size=3, padding=1).permute(0, 2, 1), dim=2)
    relevance = torch.bmm(k, q)  # (N, HrWr, HW)
    S, index = torch.max(relevance, dim=1)
    return S, index


def relevance_search(
    query: Tensor,
    key: Tensor,
    *,
    chunk: int | None = None,
    dtype: torch.dtype | None = None,
    method: str = "auto",
) -> tuple[Tensor, Tensor]:
    """For each query patch, the most relevant reference patch: S = max cosine, index = argmax.

    query: (N, C, H, W) level-3 features of LR↑; key: (N, C, Hr, Wr) level-3 features of Ref↓↑.
    Returns S (N, H·W) float32 and index (N, H·W) int64 into the Hr·Wr reference positions
    (row-major, i.e. index = y·Wr + x).

    method: "chunked" (blocks of R in memory, any device), "fused" (`ttsr.fused_search`: one
    Triton kernel, no R in memory; CUDA, or Triton's slow interpreter for CPU tensors), "dense"
    (`dense_relevance_search`), or "auto" (see `choose_method`: fused on CUDA when Triton is
    installed and no chunk is given, dense for chunk 0, chunked otherwise).
    chunk: reference positions per block of the chunked path; None picks `auto_chunk`, 0 runs the
    dense reference computation. Peak extra memory is O(C·9·(HW + HrWr) + chunk·HW); the fused
    path needs O(C·9·(HW + HrWr)) only.
    dtype: dtype of the matmuls (e.g. torch.bfloat16); patches are normalised and the running max
    is kept in fp32 (the fused kernel also accumulates each product in fp32, while a bf16 block
    matmul rounds its output to bf16). None means fp32 (tf32 where
    `torch.backends.cuda.matmul.allow_tf32` is set) — autocast is switched off inside on
    purpose: in bf16 many relevances round to the same value and the argmax would change.

    Ties: like `torch.max`, the first (lowest) reference index among equal maxima wins — within a
    block by `torch.max`, across blocks because a later block must be strictly greater; the fused
    kernel breaks ties the same way (see `ttsr.fused_search`). Values that differ only by
    rounding may pick different indices on different paths.

    Gradients: the search itself runs without autograd; when the inputs require grad, S is
    recomputed as ⟨K̂[index], Q̂⟩, which has exactly the gradient of `max` (it flows through the
    selected pair only) at O(HW · C·9) memory instead of keeping every block alive.
    """
    _check_pair(query, key)
    method = choose_method(method, chunk, query.device)
    if method == "dense":
        return dense_relevance_search(query, key)
    with torch.autocast(device_type=query.device.type, enabled=False):
        q = _unit_patches(query)  # (N, D, HW)
        k = _unit_patches(key).transpose(1, 2)  # (N, HrWr, D), a view: bmm takes it transposed
        with torch.no_grad():
            if method == "fused":
                best, index = _fused_search(q, k, dtype)
            else:
                best, index = _chunked_search(q, k, chunk, dtype)

        if torch.is_grad_enabled() and (query.requires_grad or key.requires_grad):
            picked = torch.gather(k, 1, index.unsqueeze(-1).expand(-1, -1, k.shape[2]))
            best = (picked * q.transpose(1, 2)).sum(dim=-1)  # (N, HW)
    return best, index


def _fused_search(q: Tensor, k: Tensor, dtype: torch.dtype | None) -> tuple[Tensor, Tensor]:
    """q (N, D, HW), k (N, HrWr, D) unit patches -> the fused kernel's (best, index)."""
    from ttsr.fused_search import max_inner_product

    # The kernel wants rows with D contiguous in both (see its module docstring): one copy of
    # each. `.contiguous()`, not `.to(memory_format=...)`: the latter returns a transposed fp32
    # view unchanged (same dtype, and a 3-D tensor has no other "contiguous" format to compare).
    dtype = torch.float32 if dtype is None else dtype
    queries = q.transpose(1, 2).to(dtype).contiguous()  # (N, HW, D)
    keys = k.to(dtype).contiguous()  # (N, HrWr, D)
    return max_inner_product(queries, keys)


def _chunked_search(
    q: Tensor, k: Tensor, chunk: int | None, dtype: torch.dtype | None
) -> tuple[Tensor, Tensor]:
    """q (N, D, HW), k (N, HrWr, D) unit patches -> running max/argmax over blocks of keys."""
    n, _, hw = q.shape
    num_refs = k.shape[1]
    step = chunk if chunk is not None else auto_chunk(n, hw)
    qm = q if dtype is None else q.to(dtype)
    best = q.new_full((n, hw), float("-inf"))
    index = torch.zeros((n, hw), dtype=torch.long, device=q.device)
    for start in range(0, num_refs, step):
        kc = k[:, start : start + step]
        if dtype is not None:
            kc = kc.to(dtype)
        value, arg = torch.bmm(kc, qm).max(dim=1)  # (N, HW) each
        value = value.float()
        better = value > best  # strict: earlier blocks keep ties (first max wins)
        best = torch.where(better, value, best)
        index = torch.where(better, arg + start, index)
    return best, index


def dense_transfer(ref: Tensor, index: Tensor, *, query_hw: tuple[int, int], scale: int) -> Tensor:
    """The reference transfer: unfold the reference, gather at `index`, fold, divide by 9.

    ref: (N, C, s·Hr, s·Wr) reference features at scale s = `scale` (1, 2 or 4 for levels 3, 2,
    1); index: (N, H·W) from the search; returns T (N, C, s·H, s·W). Patches are 3s×3s with
    stride s and padding s.
    """
    h, w = query_hw
    s = scale
    unfolded = F.unfold(ref, kernel_size=3 * s, padding=s, stride=s)  # (N, C·9s², HrWr)
    picked = torch.gather(unfolded, 2, index.unsqueeze(1).expand(-1, unfolded.shape[1], -1))
    folded = F.fold(picked, output_size=(s * h, s * w), kernel_size=3 * s, padding=s, stride=s)
    return folded / 9.0


def transfer(ref: Tensor, index: Tensor, *, query_hw: tuple[int, int], scale: int) -> Tensor:
    """`dense_transfer` without the unfolded patches: same result, output-sized temporaries.

    ref: (N, C, s·Hr, s·Wr); index: (N, H·W) into the Hr·Wr grid; returns (N, C, s·H, s·W).

    Why this is the same computation: a 3s×3s patch with stride s and padding s is a 3×3 grid of
    s×s blocks. The patch at reference position j covers reference blocks j + (dy, dx) and is
    folded onto output blocks p + (dy, dx), dy, dx ∈ {-1, 0, 1}. So output block p receives, for
    each offset d, reference block index[p - d] + d (zero where p - d or index[p - d] + d falls
    outside), and the sum is divided by 9.
    """
    n, c, ref_h, ref_w = ref.shape
    h, w = query_hw
    s = scale
    if ref_h % s or ref_w % s:
        raise ValueError(f"reference features {tuple(ref.shape)} are not a multiple of {s}")
    hr, wr = ref_h // s, ref_w // s
    if index.shape != (n, h * w):
        raise ValueError(f"index {tuple(index.shape)} does not match query grid {(n, h * w)}")

    # Reference blocks with one zero block of padding around the grid: every target
    # index[q] + d then lies inside, and block 0 (a corner, always zero) stands for "nothing".
    hp, wp = hr + 2, wr + 2
    padded = F.pad(ref, (s, s, s, s))  # (N, C, s·hp, s·wp)
    blocks = padded.reshape(n, c, hp, s, wp, s).permute(0, 2, 4, 1, 3, 5)
    blocks = blocks.reshape(n * hp * wp, c * s * s)  # one row per block

    # Where in the padded grid each query's match sits; -1 marks query positions outside.
    jy = torch.div(index, wr, rounding_mode="floor")
    jx = index - jy * wr
    base = torch.arange(n, device=index.device).view(n, 1) * (hp * wp)
    match = ((jy + 1) * wp + (jx + 1) + base).view(n, h, w)
    match = F.pad(match, (1, 1, 1, 1), value=-1)  # (N, H+2, W+2)

    out = None
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            src = match[:, 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]  # match[p - d]
            rows = torch.where(src >= 0, src + dy * wp + dx, torch.zeros_like(src))
            part = blocks.index_select(0, rows.reshape(-1))  # (N·H·W, C·s²)
            out = part if out is None else out + part
    out = out / 9.0
    out = out.reshape(n, h, w, c, s, s).permute(0, 3, 1, 4, 2, 5)
    return out.reshape(n, c, h * s, w * s)
