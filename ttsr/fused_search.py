"""Fused max/argmax of inner products: the relevance search without the relevance matrix.

`relevance_search` (ttsr/search.py) needs, for every query patch, the largest inner product with
any reference patch and where it is. The chunked PyTorch path writes each (chunk × HW) block of
R = K̂ᵀ·Q̂ to memory and reads it back to take the max; here one Triton kernel keeps each
(BLOCK_M × BLOCK_N) tile of R in registers, flash-attention style, and only the running max and
argmax of each query row ever leave the chip. Memory traffic is that of the inputs, whatever the
image size.

Layout: both patch matrices are rows of D = C·9 values with D contiguous, q (N, HW, D) and
k (N, HrWr, D). A tile load then reads BLOCK_D consecutive values per row (coalesced, vectorised)
and both dot operands are "K-major", the layout Hopper's tensor-core MMA requires for tf32 and
prefers for bf16. `F.unfold` produces (N, D, HW) with HW contiguous instead; transposing it once
costs O(HW·D), negligible next to the O(HW·HrWr·D) search.

Grid: (query tiles, key splits, batch). A 160-px batch of 8 has only 8 × 13 query tiles of 128,
fewer than the GPU's SMs, so the reference positions are also split into `splits` contiguous
ranges; each program scans its range and writes a partial (max, argmax); the few partials per
query are combined in PyTorch.

Ties: the lowest reference index among equal maxima wins, as in `torch.max`: within a tile by
the reduction's combine step (`_argmax_combine`), across tiles and splits because a later one
must be strictly greater. The values themselves are summed in a different order than cuBLAS sums
them, so two reference patches whose inner products differ by rounding only (~1e-7) may be chosen
differently from the dense search; both are maxima up to rounding.

This module imports Triton; `ttsr.search` imports it only when the fused path is chosen. CPU
tensors run through Triton's interpreter (the same kernel source, executed with NumPy), which is
how the tests check it on machines without a GPU; it is slow and meant for small inputs only.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from torch import Tensor

# Tile sizes for the interpreter (CPU tensors): small, so that tests on tiny inputs still cover
# several query tiles, key tiles, D steps and partial tiles.
INTERPRET_BLOCKS = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_D": 32}


@triton.jit
def _argmax_combine(value_a, index_a, value_b, index_b):
    """Combine step of a (max, argmax) reduction: the larger value, the lower index on ties."""
    take_a = (value_a > value_b) | ((value_a == value_b) & (index_a < index_b))
    return tl.where(take_a, value_a, value_b), tl.where(take_a, index_a, index_b)


# Triton ships the same combine step as the one `tl.max(x, return_indices=True)` reduces with;
# the interpreter recognises that function and reduces with NumPy, while any other combine
# function runs element by element in Python (~100x slower). `tl.max` itself cannot be called:
# it is a `@triton.jit` library wrapper, and those run in the interpreter only if TRITON_INTERPRET
# was set before Triton was imported. So the kernel calls `tl.reduce` with Triton's combine step,
# or with ours where a Triton version does not have it.
ARGMAX_COMBINE = getattr(tl.standard, "_argmax_combine_tie_break_left", _argmax_combine)


def _relevance_max_kernel(
    q_ptr,
    k_ptr,
    best_ptr,
    index_ptr,
    num_queries,
    num_keys,
    dim,
    keys_per_split,
    stride_qb,
    stride_qm,
    stride_qd,
    stride_kb,
    stride_kn,
    stride_kd,
    stride_ob,
    stride_os,
    INPUT_PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    EVEN_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """One program: BLOCK_M queries of one image against the keys of one split.

    Writes best[b, split, m] (fp32) and index[b, split, m] (int32, absolute key index).
    UPCAST: convert loaded tiles to fp32 before the dot, for the interpreter, whose dot cannot
    multiply bf16 (products of two bf16 values are exact in fp32, so the result is the same).
    EVEN_D: BLOCK_D divides dim (2304 in TTSR), so the D loop needs no mask.
    """
    pid_m = tl.program_id(0)
    split = tl.program_id(1)
    batch = tl.program_id(2).to(tl.int64)  # batch · stride can exceed 2^31

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_valid = offs_m < num_queries
    # Rows past the end load the last row instead (results dropped at the store): the loads need
    # no mask, which keeps them vectorised and pipelined.
    rows_m = tl.minimum(offs_m, num_queries - 1).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    q_tile = q_ptr + batch * stride_qb + rows_m[:, None] * stride_qm
    q_tile += offs_d[None, :] * stride_qd  # (BLOCK_M, BLOCK_D) pointers

    best = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    arg = tl.full([BLOCK_M], 0, dtype=tl.int32)
    key_start = split * keys_per_split
    key_end = tl.minimum(key_start + keys_per_split, num_keys)
    for n0 in range(key_start, key_end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_valid = offs_n < key_end
        rows_n = tl.minimum(offs_n, key_end - 1).to(tl.int64)
        k_tile = k_ptr + batch * stride_kb + rows_n[None, :] * stride_kn
        k_tile += offs_d[:, None] * stride_kd  # (BLOCK_D, BLOCK_N) pointers

        scores = tl.full([BLOCK_M, BLOCK_N], 0.0, dtype=tl.float32)
        for d0 in range(0, dim, BLOCK_D):
            if EVEN_D:
                q = tl.load(q_tile + d0 * stride_qd)  # (BLOCK_M, BLOCK_D)
                k = tl.load(k_tile + d0 * stride_kd)  # (BLOCK_D, BLOCK_N)
            else:
                d_valid = d0 + offs_d < dim
                q = tl.load(q_tile + d0 * stride_qd, mask=d_valid[None, :], other=0.0)
                k = tl.load(k_tile + d0 * stride_kd, mask=d_valid[:, None], other=0.0)
            if UPCAST:
                q = q.to(tl.float32)
                k = k.to(tl.float32)
            scores = tl.dot(q, k, scores, input_precision=INPUT_PRECISION)

        scores = tl.where(n_valid[None, :], scores, float("-inf"))
        # Positions within the tile (what the interpreter's NumPy argmax returns, too).
        cols = tl.broadcast_to(tl.arange(0, BLOCK_N)[None, :], [BLOCK_M, BLOCK_N])
        tile_best, tile_arg = tl.reduce((scores, cols), 1, ARGMAX_COMBINE)
        better = tile_best > best  # strict: earlier tiles keep ties
        best = tl.where(better, tile_best, best)
        arg = tl.where(better, tile_arg + n0, arg)

    out = batch * stride_ob + split.to(tl.int64) * stride_os + offs_m  # splits·M may pass 2^31
    tl.store(best_ptr + out, best, mask=m_valid)
    tl.store(index_ptr + out, arg, mask=m_valid)


def _cuda_configs(dtype: torch.dtype) -> list[triton.Config]:
    # BLOCK_D covers 128 bytes of a row per load in either dtype. 128×128 and 128×256 are the
    # usual Hopper GEMM tiles; the smaller ones help when there are few query tiles.
    block_d = 64 if dtype == torch.bfloat16 else 32
    shapes = [(128, 128, 8, 3), (128, 256, 8, 3), (64, 128, 4, 4), (128, 64, 4, 4)]
    return [
        triton.Config(
            {"BLOCK_M": m, "BLOCK_N": n, "BLOCK_D": block_d}, num_warps=warps, num_stages=stages
        )
        for m, n, warps, stages in shapes
    ]


# Offsets inside a row (d · stride_d) are int32 in the kernel; rows, batches and splits are
# int64. A row whose D-stride puts its last value this far away is copied D-contiguous first.
INT32_OFFSET_LIMIT = 2**31


def _rows_with_int32_offsets(x: Tensor) -> Tensor:
    """x (N, rows, D), made D-contiguous when (D - 1)·stride_d would overflow int32 (e.g. a
    transposed (N, D, HW) patch matrix with HW·D >= 2^31: a ~975-px LR image); else x itself."""
    if (x.shape[2] - 1) * abs(x.stride(2)) < INT32_OFFSET_LIMIT:
        return x
    return x.contiguous()


@functools.cache
def _kernel(interpret: bool, dtype: torch.dtype):
    """The kernel, compiled (autotuned over a few tile shapes per problem size) or interpreted.

    `triton.jit` decides between the two when it wraps the function, from the `interpret` knob
    (the TRITON_INTERPRET environment variable), so the interpreted copy is wrapped inside a
    scope that sets the knob; the environment is restored afterwards.
    """
    if interpret:
        with triton.knobs.runtime.scope():
            triton.knobs.runtime.interpret = True
            return triton.jit(_relevance_max_kernel)
    jitted = triton.jit(_relevance_max_kernel)
    even_d = triton.heuristics({"EVEN_D": lambda args: args["dim"] % args["BLOCK_D"] == 0})
    tune = triton.autotune(_cuda_configs(dtype), key=["num_queries", "num_keys", "dim"])
    return tune(even_d(jitted))


def _default_splits(device: torch.device, batch: int, num_queries: int, num_keys: int) -> int:
    """Key splits so that about two waves of programs fill the GPU (1 when already full)."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    programs = batch * triton.cdiv(num_queries, 128)
    return max(1, min(triton.cdiv(2 * sms, programs), triton.cdiv(num_keys, 128)))


def max_inner_product(
    queries: Tensor,
    keys: Tensor,
    *,
    splits: int | None = None,
    interpret: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """For each query row, the largest inner product with any key row and that key's index.

    queries (N, M, D), keys (N, K, D), both float32 or both bfloat16, on the same device; any
    strides work, D contiguous is fastest (a row whose D-stride would overflow the kernel's int32
    in-row offsets is copied D-contiguous first). Products are accumulated in fp32; fp32 inputs
    use tf32 tensor cores when `torch.backends.cuda.matmul.allow_tf32` is set (as `torch.bmm`
    does) and exact fp32 otherwise. Returns best (N, M) float32 and index (N, M) int64; the
    lowest index wins among equal maxima. No autograd.

    splits: contiguous ranges the keys are cut into (partials combined afterwards); None picks
    enough to fill the GPU. interpret: run through Triton's interpreter; None = for CPU tensors.
    """
    if queries.dim() != 3 or keys.dim() != 3:
        raise ValueError(
            f"queries and keys must be (N, M, D) and (N, K, D), got {tuple(queries.shape)} "
            f"and {tuple(keys.shape)}"
        )
    n, num_queries, dim = queries.shape
    if keys.shape[0] != n or keys.shape[2] != dim:
        raise ValueError(
            f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)} differ in batch or D"
        )
    if queries.dtype != keys.dtype or queries.dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(
            f"queries and keys must both be float32 or both bfloat16, got {queries.dtype} "
            f"and {keys.dtype}"
        )
    if queries.device != keys.device:
        raise ValueError(f"queries on {queries.device} but keys on {keys.device}")
    num_keys = keys.shape[1]
    if num_keys == 0:
        raise ValueError("keys must hold at least one row")
    if splits is not None and splits < 1:
        raise ValueError(f"splits must be None or >= 1, got {splits}")

    queries, keys = _rows_with_int32_offsets(queries), _rows_with_int32_offsets(keys)
    device = queries.device
    if interpret is None:
        interpret = device.type == "cpu" or triton.knobs.runtime.interpret
    if not interpret and device.type != "cuda":
        raise ValueError(f"the compiled kernel needs CUDA tensors, got {device}")

    if splits is None:
        splits = _default_splits(device, n, num_queries, num_keys)
    keys_per_split = triton.cdiv(num_keys, min(splits, num_keys))
    splits = triton.cdiv(num_keys, keys_per_split)  # every split holds at least one key

    best = torch.empty((n, splits, num_queries), dtype=torch.float32, device=device)
    index = torch.empty((n, splits, num_queries), dtype=torch.int32, device=device)
    if num_queries == 0 or n == 0:
        return best[:, 0], index[:, 0].long()

    if queries.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
        precision = "tf32"
    else:
        precision = "ieee"  # bf16 inputs: exact products, fp32 sums
    kernel = _kernel(interpret, queries.dtype)
    args = (
        queries,
        keys,
        best,
        index,
        num_queries,
        num_keys,
        dim,
        keys_per_split,
        *queries.stride(),
        *keys.stride(),
        best.stride(0),
        best.stride(1),
    )
    if interpret:
        grid = (triton.cdiv(num_queries, INTERPRET_BLOCKS["BLOCK_M"]), splits, n)
        upcast = queries.dtype == torch.bfloat16
        even_d = dim % INTERPRET_BLOCKS["BLOCK_D"] == 0
        kernel[grid](
            *args, INPUT_PRECISION=precision, UPCAST=upcast, EVEN_D=even_d, **INTERPRET_BLOCKS
        )
    else:

        def grid(meta):
            return (triton.cdiv(num_queries, meta["BLOCK_M"]), splits, n)

        kernel[grid](*args, INPUT_PRECISION=precision, UPCAST=False)

    # Combine the splits in key order; strict > keeps the lowest index among equal maxima.
    value, arg = best[:, 0], index[:, 0]
    for s in range(1, splits):
        better = best[:, s] > value
        value = torch.where(better, best[:, s], value)
        arg = torch.where(better, index[:, s], arg)
    return value, arg.long()
