"""The chunked search and the gather-based transfer against the reference's dense computation."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from ttsr.search import (
    auto_chunk,
    dense_relevance_search,
    dense_transfer,
    relevance_search,
    transfer,
)


def features(seed: int, *shape: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


@pytest.mark.parametrize("chunk", [None, 1, 4, 7, 30, 31, 1000])
def test_chunked_search_equals_dense(chunk):
    # key grid 6x5 = 30 positions: 4 and 7 do not divide it, 30 is one block, 31/1000 exceed it
    query, key = features(0, 2, 8, 7, 9), features(1, 2, 8, 6, 5)
    S_dense, index_dense = dense_relevance_search(query, key)
    S, index = relevance_search(query, key, chunk=chunk)
    assert S.shape == index.shape == (2, 7 * 9)
    assert index.dtype == torch.long
    torch.testing.assert_close(S, S_dense, rtol=0, atol=1e-6)
    assert torch.equal(index, index_dense)


def test_chunk_zero_is_the_dense_computation():
    query, key = features(2, 1, 4, 5, 5), features(3, 1, 4, 5, 5)
    S, index = relevance_search(query, key, chunk=0)
    S_dense, index_dense = dense_relevance_search(query, key)
    assert torch.equal(S, S_dense) and torch.equal(index, index_dense)


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_ties_pick_the_first_reference_position(chunk):
    # Every reference patch away from the border is the same vector, so the interior ones tie;
    # the first maximum (lowest index) must win, as torch.max does, across chunk boundaries too.
    query = features(4, 1, 3, 4, 4)
    key = torch.ones(1, 3, 5, 5)
    _, index_dense = dense_relevance_search(query, key)
    _, index = relevance_search(query, key, chunk=chunk)
    assert torch.equal(index, index_dense)


def test_bf16_matmul_is_close_to_fp32():
    query, key = features(5, 1, 16, 8, 8), features(6, 1, 16, 8, 8)
    S32, _ = relevance_search(query, key)
    S16, index16 = relevance_search(query, key, dtype=torch.bfloat16, chunk=5)
    assert S16.dtype == torch.float32 and index16.max() < 64
    torch.testing.assert_close(S16, S32, rtol=0, atol=2e-2)


def test_autocast_does_not_change_the_search():
    # Autocast is switched off inside: bf16 relevances would tie and move the argmax.
    query, key = features(7, 1, 16, 6, 6), features(8, 1, 16, 6, 6)
    S, index = relevance_search(query, key, chunk=7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        S_ac, index_ac = relevance_search(query, key, chunk=7)
    assert S_ac.dtype == torch.float32
    assert torch.equal(index, index_ac) and torch.equal(S, S_ac)


def test_gradients_match_dense():
    query, key = features(9, 1, 6, 5, 6), features(10, 1, 6, 4, 7)
    grads = []
    for fn in (dense_relevance_search, lambda q, k: relevance_search(q, k, chunk=3)):
        q, k = query.clone().requires_grad_(), key.clone().requires_grad_()
        S, _ = fn(q, k)
        (S * torch.arange(S.numel()).view_as(S)).sum().backward()
        grads.append((q.grad, k.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_transfer_equals_dense_transfer(scale):
    query, key = features(11, 2, 8, 5, 7), features(12, 2, 8, 6, 4)
    _, index = dense_relevance_search(query, key)
    ref = features(13, 2, 3, 6 * scale, 4 * scale).requires_grad_()
    out = transfer(ref, index, query_hw=(5, 7), scale=scale)
    expected = dense_transfer(ref, index, query_hw=(5, 7), scale=scale)
    assert out.shape == (2, 3, 5 * scale, 7 * scale)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    weights = features(14, *out.shape)
    (grad,) = torch.autograd.grad((out * weights).sum(), ref)
    (grad_dense,) = torch.autograd.grad((expected * weights).sum(), ref)
    torch.testing.assert_close(grad, grad_dense, rtol=0, atol=1e-5)


def test_transfer_accepts_channels_last():
    query, key = features(15, 1, 4, 4, 4), features(16, 1, 4, 4, 4)
    _, index = relevance_search(query, key)
    ref = features(17, 1, 5, 8, 8)
    a = transfer(ref, index, query_hw=(4, 4), scale=2)
    b = transfer(ref.to(memory_format=torch.channels_last), index, query_hw=(4, 4), scale=2)
    assert torch.equal(a, b)


def test_bad_inputs_are_value_errors():
    with pytest.raises(ValueError, match="differ in batch or channels"):
        relevance_search(torch.zeros(1, 4, 3, 3), torch.zeros(1, 5, 3, 3))
    with pytest.raises(ValueError, match="chunk"):
        relevance_search(torch.zeros(1, 4, 3, 3), torch.zeros(1, 4, 3, 3), chunk=-1)
    with pytest.raises(ValueError, match="multiple of 4"):
        transfer(
            torch.zeros(1, 2, 9, 8), torch.zeros(1, 4, dtype=torch.long), query_hw=(2, 2), scale=4
        )


def test_auto_chunk_bounds_the_block():
    assert auto_chunk(1, 65536) * 65536 <= 64 * 1024 * 1024
    assert auto_chunk(1, 10**12) == 1


# Peak RSS growth of a fresh process during one search + level-1 transfer, in MiB, for two sizes
# in turn. ru_maxrss is a high-water mark, so the small size runs first and both are measured
# from the same baseline (taken after a warm-up call, so library set-up is not counted).
_MEASURE = textwrap.dedent(
    """
    import json, resource, torch
    from ttsr.search import relevance_search, transfer
    torch.set_num_threads(1)
    torch.manual_seed(0)

    def run(side):
        # few search channels keep the (HW x HrWr) work small; the transfer carries real width
        q, k = torch.randn(1, 4, side, side), torch.randn(1, 4, side, side)
        ref = torch.randn(1, 16, 4 * side, 4 * side)
        _, idx = relevance_search(q, k, chunk=256)
        return transfer(ref, idx, query_hw=(side, side), scale=4).shape

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    run(8)
    base = peak()
    run(64)
    small = peak() - base
    run(128)
    large = peak() - base
    print(json.dumps({"small": small, "large": large}))
    """
)


@pytest.mark.slow
def test_chunked_search_memory_grows_linearly_with_area():
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE], capture_output=True, text=True, check=True, timeout=120
    )
    peaks = json.loads(out.stdout.strip().splitlines()[-1])
    small, large = peaks["small"], peaks["large"]
    # Area x4 (side 64 -> 128): linear growth is x4, the dense relevance matrix grows x16
    # (64 MiB -> 1 GiB).
    dense_large_mib = (128 * 128) ** 2 * 4 / 2**20
    assert large < 6 * max(small, 8.0), peaks
    assert large < dense_large_mib / 4, peaks
