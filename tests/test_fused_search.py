"""The fused Triton search against the dense search.

On the CPU the kernel runs through Triton's interpreter (tiny sizes: it executes the kernel's
Python with NumPy); the CUDA variants compile it and run only where a GPU is present. One test
compiles the kernel for Hopper (sm_90) without a GPU, so a change that the interpreter accepts
but the compiler rejects fails here too.
"""

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from ttsr import fused_search  # noqa: E402
from ttsr.fused_search import max_inner_product  # noqa: E402
from ttsr.model import SearchTransfer  # noqa: E402
from ttsr.search import (  # noqa: E402
    _unit_patches,
    choose_method,
    dense_relevance_search,
    relevance_search,
)

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    ),
]


@pytest.fixture(autouse=True)
def exact_fp32_matmul():
    # The dense reference and the kernel's fp32 path both follow this flag (tf32 when set).
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = saved


def features(seed: int, *shape: int, device: str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(device)


def unit_rows(seed: int, *shape: int, device: str = "cpu") -> torch.Tensor:
    return F.normalize(features(seed, *shape, device=device), dim=-1)


def unit_patches(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, HW, C·9) unit 3×3 patch vectors, as the search builds them."""
    return F.normalize(F.unfold(x.double(), kernel_size=3, padding=1), dim=1).transpose(1, 2)


def assert_is_argmax(relevance, best, index, expected_index, *, atol):
    """relevance (N, K, M) exact inner products; best/index (N, M) from the path under test.

    Values agree with the true max within atol; the index equals the dense one, except where the
    two chosen keys' inner products are equal within atol (a tie up to rounding).
    """
    true_best = relevance.max(dim=1).values
    torch.testing.assert_close(best.double(), true_best, rtol=0, atol=atol)
    at_index = relevance.gather(1, index.unsqueeze(1)).squeeze(1)
    at_expected = relevance.gather(1, expected_index.unsqueeze(1)).squeeze(1)
    differ = index != expected_index
    assert torch.all((at_index - at_expected).abs()[differ] <= atol), (
        f"{int(differ.sum())} indices differ by more than a tie"
    )
    assert int(differ.sum()) <= max(1, index.numel() // 100)  # ties are rare in random data


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("splits", [1, 3])
def test_kernel_equals_bmm_max_on_odd_sizes(device, splits):
    # 63 queries, 30 keys, D = 72: none a multiple of the interpreter's 16/16/32 tiles.
    queries, keys = unit_rows(0, 2, 63, 72, device=device), unit_rows(1, 2, 30, 72, device=device)
    best, index = max_inner_product(queries, keys, splits=splits)
    assert best.shape == index.shape == (2, 63)
    assert best.dtype == torch.float32 and index.dtype == torch.long
    relevance = torch.bmm(keys.double(), queries.double().transpose(1, 2))  # (N, K, M)
    dense_index = relevance.max(dim=1).indices
    assert_is_argmax(relevance.cpu(), best.cpu(), index.cpu(), dense_index.cpu(), atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_fused_search_equals_dense(device):
    query, key = features(2, 2, 8, 7, 9, device=device), features(3, 2, 8, 6, 5, device=device)
    S_dense, index_dense = dense_relevance_search(query, key)
    S, index = relevance_search(query, key, method="fused")
    assert S.shape == index.shape == (2, 7 * 9) and S.dtype == torch.float32
    relevance = torch.bmm(unit_patches(key.cpu()), unit_patches(query.cpu()).transpose(1, 2))
    torch.testing.assert_close(S, S_dense, rtol=0, atol=1e-6)
    assert_is_argmax(relevance, S.cpu(), index.cpu(), index_dense.cpu(), atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_inputs_accumulate_in_fp32(device):
    # The kernel multiplies bf16-rounded unit patches exactly and sums in fp32: it must match the
    # float64 relevance of the rounded patches closely (a bf16 matmul output would be ~1e-2 off).
    query, key = features(4, 1, 16, 8, 8, device=device), features(5, 1, 16, 8, 8, device=device)
    S, index = relevance_search(query, key, method="fused", dtype=torch.bfloat16)
    assert S.dtype == torch.float32
    # the very bf16 values the kernel multiplies: the search's fp32 patches, rounded
    q = _unit_patches(query).transpose(1, 2).bfloat16().double().cpu()
    k = _unit_patches(key).transpose(1, 2).bfloat16().double().cpu()
    relevance = torch.bmm(k, q.transpose(1, 2))
    assert_is_argmax(relevance, S.cpu(), index.cpu(), relevance.max(dim=1).indices, atol=1e-5)
    # and it is a near-maximum of the fp32 relevance too
    S32, _ = dense_relevance_search(query, key)
    torch.testing.assert_close(S, S32, rtol=0, atol=2e-2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("splits", [1, 2])
def test_ties_pick_the_first_reference_position(device, splits):
    # Constant maps: every interior 3×3 patch of the 6×6 reference is the same vector, and it is
    # the exact maximum for the interior queries; the border patches tie in groups too. The 16
    # interior keys span both 16-key tiles of the interpreter and both splits (keys 0-17 and
    # 18-35): the lowest index must win everywhere, as torch.max picks it.
    query = torch.ones(1, 3, 4, 4, device=device)
    key = torch.ones(1, 3, 6, 6, device=device)
    _, index_dense = dense_relevance_search(query, key)
    q = F.normalize(F.unfold(query, 3, padding=1), dim=1).transpose(1, 2).contiguous()
    k = F.normalize(F.unfold(key, 3, padding=1), dim=1).transpose(1, 2).contiguous()
    S, index = max_inner_product(q, k, splits=splits)
    assert torch.equal(index, index_dense)
    assert index.view(4, 4)[1, 1] == 7 and S.view(4, 4)[1, 1] == pytest.approx(1.0)


def test_gradients_match_dense():
    query, key = features(7, 1, 6, 5, 6), features(8, 1, 6, 4, 7)
    grads = []
    for method in ("dense", "fused"):
        q, k = query.clone().requires_grad_(), key.clone().requires_grad_()
        S, _ = relevance_search(q, k, method=method)
        (S * torch.arange(S.numel()).view_as(S)).sum().backward()
        grads.append((q.grad, k.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-6)


def test_search_transfer_module_uses_the_fused_kernel():
    args = [features(9 + i, 1, c, s, s) for i, (c, s) in enumerate([(4, 5), (4, 5)])]
    refs = [features(20 + i, 1, 2, 5 * f, 5 * f) for i, f in enumerate((4, 2, 1))]
    fused = SearchTransfer(method="fused")(*args, *refs)
    chunked = SearchTransfer(method="chunked")(*args, *refs)
    for a, b in zip(fused, chunked, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_method_choice():
    cpu = torch.device("cpu")
    assert choose_method("auto", None, cpu) == "chunked"
    assert choose_method("auto", 0, cpu) == "dense"
    assert choose_method("auto", 7, cpu) == "chunked"
    assert choose_method("fused", None, cpu) == "fused"
    with pytest.raises(ValueError, match="method must be one of"):
        choose_method("flash", None, cpu)
    with pytest.raises(ValueError, match="chunk=7 is for the chunked search"):
        choose_method("fused", 7, cpu)
    with pytest.raises(ValueError, match="chunk=0 means the dense search"):
        choose_method("chunked", 0, cpu)
    with pytest.raises(ValueError, match="search_method"):
        SearchTransfer(method="flash")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_is_fused_on_cuda():
    if torch.cuda.get_device_capability() >= (8, 0):
        assert choose_method("auto", None, torch.device("cuda")) == "fused"


def test_bad_kernel_inputs():
    q, k = unit_rows(0, 1, 4, 8), unit_rows(1, 1, 5, 8)
    with pytest.raises(ValueError, match="differ in batch or D"):
        max_inner_product(q, unit_rows(1, 1, 5, 9))
    with pytest.raises(ValueError, match="must both be float32 or both bfloat16"):
        max_inner_product(q, k.double())
    with pytest.raises(ValueError, match="splits"):
        max_inner_product(q, k, splits=0)
    with pytest.raises(ValueError, match="compiled kernel needs CUDA"):
        max_inner_product(q, k, interpret=False)


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_kernel_compiles_for_hopper_with_tensor_cores(dtype):
    # Ahead-of-time compilation needs no GPU: Triton ships ptxas. The arguments carry the
    # alignment facts the JIT would derive from real tensors (pointers and D-strides of 2304).
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget

    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    config = fused_search._cuda_configs(torch_dtype)[0]
    jitted = triton.jit(fused_search._relevance_max_kernel)
    names = jitted.arg_names
    signature = {name: "i32" for name in names}
    signature.update(q_ptr=f"*{dtype}", k_ptr=f"*{dtype}", best_ptr="*fp32", index_ptr="*i32")
    constants = dict(
        INPUT_PRECISION="tf32", UPCAST=False, EVEN_D=True, stride_qd=1, stride_kd=1, **config.kwargs
    )
    signature.update({name: "constexpr" for name in constants})
    aligned = ["q_ptr", "k_ptr", "best_ptr", "index_ptr", "stride_qb", "stride_qm"]
    aligned += ["stride_kb", "stride_kn", "stride_ob", "stride_os", "dim"]
    attrs = {(names.index(a),): [["tt.divisibility", 16]] for a in aligned}
    source = triton.compiler.ASTSource(jitted, signature, constexprs=constants, attrs=attrs)
    options = dict(num_warps=config.num_warps, num_stages=config.num_stages)
    kernel = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
    assert "wgmma.mma_async" in kernel.asm["ptx"]  # Hopper tensor cores
    assert "cp.async" in kernel.asm["ptx"]  # the D loop is software-pipelined
    assert kernel.metadata.shared <= 228 * 1024
