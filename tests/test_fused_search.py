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


def compile_for_hopper(dtype: str, config_index: int, layout: dict[str, int]):
    """The kernel compiled ahead of time for sm_90 (no GPU needed: Triton ships ptxas), with the
    specialisation Triton's JIT derives from `layout`: integer arguments equal to 1 become
    constants, pointers and strides divisible by 16 carry that fact."""
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget

    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    config = fused_search._cuda_configs(torch_dtype)[config_index]
    jitted = triton.jit(fused_search._relevance_max_kernel)
    names = jitted.arg_names
    signature = {name: "i32" for name in names}
    signature.update(q_ptr=f"*{dtype}", k_ptr=f"*{dtype}", best_ptr="*fp32", index_ptr="*i32")
    constants = dict(INPUT_PRECISION="tf32", UPCAST=False, EVEN_D=True, **config.kwargs)
    constants.update({name: 1 for name, value in layout.items() if value == 1})
    signature.update({name: "constexpr" for name in constants})
    aligned = ["q_ptr", "k_ptr", "best_ptr", "index_ptr", "stride_ob", "stride_os", "dim"]
    aligned += [name for name, value in layout.items() if value != 1 and value % 16 == 0]
    attrs = {(names.index(a),): [["tt.divisibility", 16]] for a in aligned}
    source = triton.compiler.ASTSource(jitted, signature, constexprs=constants, attrs=attrs)
    options = dict(num_warps=config.num_warps, num_stages=config.num_stages)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)


def ptxas_usage(kernel) -> dict[str, int]:
    """Registers and spill bytes of a compiled kernel: its PTX assembled again with `ptxas -v`
    (the ptxas and options Triton uses; Triton's own log is skipped on a cache hit)."""
    import re
    import subprocess
    import tempfile

    from triton import knobs

    with tempfile.TemporaryDirectory() as tmp:
        ptx = f"{tmp}/kernel.ptx"
        with open(ptx, "w") as f:
            f.write(kernel.asm["ptx"])
        command = [knobs.nvidia.ptxas.path, "-v", "--regAllocOptLevel=2", "--gpu-name=sm_90a"]
        log = subprocess.run(
            [*command, ptx, "-o", f"{tmp}/kernel.cubin"], capture_output=True, text=True, check=True
        ).stderr
    registers = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    assert registers and spills, log
    return {
        "registers": int(registers[1]),
        "spill_stores": int(spills[1]),
        "spill_loads": int(spills[2]),
    }


def the_layout_the_search_passes() -> dict[str, int]:
    """The strides `relevance_search` really hands the kernel, captured from a CPU call with
    TTSR's D = 256·9 (the kernel itself replaced by a stub that records its arguments)."""
    seen = {}

    def record(queries, keys):
        seen.update(stride_qb=queries.stride(0), stride_qm=queries.stride(1))
        seen.update(stride_qd=queries.stride(2), stride_kb=keys.stride(0))
        seen.update(stride_kn=keys.stride(1), stride_kd=keys.stride(2))
        n, m, _ = queries.shape
        return queries.new_zeros(n, m), torch.zeros(n, m, dtype=torch.long)

    query, key = features(0, 1, 256, 4, 4), features(1, 1, 256, 4, 4)
    saved = fused_search.max_inner_product
    fused_search.max_inner_product = record
    try:
        relevance_search(query, key, method="fused")
    finally:
        fused_search.max_inner_product = saved
    return seen


def test_the_search_hands_the_kernel_contiguous_rows():
    # `.to(fp32, memory_format=contiguous_format)` of a transposed view used to leave it a view:
    # the kernel read D with stride HW (255 registers and spills on sm_90, int32 offsets d·HW).
    layout = the_layout_the_search_passes()
    assert layout["stride_qd"] == 1 and layout["stride_kd"] == 1, layout
    assert layout["stride_qm"] == layout["stride_kn"] == 256 * 9, layout


@pytest.mark.parametrize("config_index", range(4))
@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_kernel_compiles_for_hopper_without_spills(dtype, config_index):
    # Every autotune config, for the layout `relevance_search` really passes.
    kernel = compile_for_hopper(dtype, config_index, the_layout_the_search_passes())
    assert "wgmma.mma_async" in kernel.asm["ptx"]  # Hopper tensor cores
    assert "cp.async" in kernel.asm["ptx"]  # the D loop is software-pipelined
    assert kernel.metadata.shared <= 228 * 1024
    usage = ptxas_usage(kernel)
    assert usage["spill_stores"] == usage["spill_loads"] == 0, f"registers spill: {usage}"


def test_rows_beyond_int32_offsets_are_copied_contiguous():
    # The real case without the memory: a transposed (1, D, HW) patch matrix of a 975-px LR image
    # (HW = 976², D = 2304: (D - 1)·HW >= 2^31) as meta tensors.
    hw, d = 976 * 976, 2304
    transposed = torch.empty_strided((1, hw, d), (hw * d, 1, hw), device="meta")
    assert (d - 1) * hw >= 2**31
    assert fused_search._rows_with_int32_offsets(transposed).stride() == (hw * d, d, 1)
    small = torch.empty_strided((1, 64, d), (64 * d, 1, 64), device="meta")
    assert fused_search._rows_with_int32_offsets(small) is small  # no copy when it fits


def test_scaled_down_int32_limit_still_gives_the_max(monkeypatch):
    # The same guard with the limit scaled down to this tiny case, through the interpreter: the
    # kernel must get D-contiguous rows and still return the max.
    queries = unit_rows(0, 2, 72, 40).transpose(1, 2)  # (2, 40, 72) view: D-stride 40
    keys = unit_rows(1, 2, 72, 30).transpose(1, 2)
    monkeypatch.setattr(fused_search, "INT32_OFFSET_LIMIT", 64)
    seen = []
    real = fused_search._rows_with_int32_offsets
    monkeypatch.setattr(
        fused_search, "_rows_with_int32_offsets", lambda x: seen.append(real(x).stride()) or real(x)
    )
    best, index = max_inner_product(queries, keys)
    assert [stride[2] for stride in seen] == [1, 1]
    relevance = torch.bmm(keys.double(), queries.double().transpose(1, 2))
    assert_is_argmax(relevance, best, index, relevance.max(dim=1).indices, atol=1e-6)


CUDA_ONLY = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@CUDA_ONLY
def test_cuda_fused_equals_chunked_at_1024_px():
    # A 1024-px image: a 256×256 level-3 grid of 256 channels for query and reference.
    torch.backends.cuda.matmul.allow_tf32 = False
    query = features(30, 1, 256, 256, 256, device="cuda")
    key = features(31, 1, 256, 256, 256, device="cuda")
    S, index = relevance_search(query, key, method="fused", dtype=torch.bfloat16)
    S_ref, index_ref = relevance_search(query, key, method="chunked", dtype=torch.bfloat16)
    torch.testing.assert_close(S, S_ref, rtol=0, atol=2e-2)
    assert (index != index_ref).float().mean() < 0.05  # bf16 block outputs round; ties only


@CUDA_ONLY
def test_cuda_kernel_beyond_int32_offsets():
    # One image whose query matrix holds more than 2^31 values (HW·D: a ~975-px LR image), and a
    # batch offset beyond 2^31 for the keys; few keys keep the search itself cheap.
    hw, d = 2**31 // 2304 + 4096, 2304
    queries = torch.randn(1, hw, d, device="cuda", dtype=torch.bfloat16)
    keys = F.normalize(torch.randn(1, 64, d, device="cuda"), dim=-1).bfloat16()
    best, index = max_inner_product(queries, keys)
    tail = slice(hw - 8192, hw)  # rows whose offsets are past 2^31
    relevance = torch.einsum("kd,md->km", keys[0].float(), queries[0, tail].float())
    torch.testing.assert_close(best[0, tail], relevance.max(dim=0).values, rtol=1e-3, atol=1e-3)
    transposed = queries.transpose(1, 2).contiguous().transpose(1, 2)  # D-stride hw
    best_t, _ = max_inner_product(transposed, keys)
    torch.testing.assert_close(best_t, best, rtol=0, atol=0)
