"""The TTSR network: reference names and sizes, shapes, the frozen LTE copy, compile, autocast."""

import pytest
import torch

from ttsr.model import RANDOM_VGG, TTSR, ModelConfig, TTSROutput

TINY = ModelConfig(n_feats=8, num_res_blocks=(1, 1, 1, 1))


def tiny(**kwargs) -> TTSR:
    torch.manual_seed(0)
    return TTSR(TINY, vgg=RANDOM_VGG, **kwargs).eval()


@pytest.fixture(scope="module")
def model() -> TTSR:
    """A shared tiny model for tests that do not change it."""
    return tiny()


def inputs(h: int, w: int, ref_hw: tuple[int, int] | None = None, *, n: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rh, rw = ref_hw or (4 * h, 4 * w)

    def img(*shape):
        return torch.rand(*shape, generator=g) * 2 - 1

    return img(n, 3, h, w), img(n, 3, 4 * h, 4 * w), img(n, 3, rh, rw), img(n, 3, rh, rw)


def test_config_from_string():
    config = ModelConfig.from_string("16+16+8+4")
    assert config == ModelConfig()
    assert ModelConfig.from_string("1+2+3+4", n_feats=8).num_res_blocks == (1, 2, 3, 4)
    assert ModelConfig(num_res_blocks=[1, 1, 1, 1]).num_res_blocks == (1, 1, 1, 1)
    assert config.blocks_string() == "16+16+8+4"
    for bad in ("16+16+8", "a+b+c+d", "1+1+1+-1"):
        with pytest.raises(ValueError, match="num_res_blocks"):
            ModelConfig.from_string(bad)
    with pytest.raises(ValueError, match="n_feats"):
        ModelConfig(n_feats=7)


def test_default_model_matches_the_reference_layout():
    model = TTSR(ModelConfig(), vgg=RANDOM_VGG)
    state = model.reference_state_dict()
    assert len(state) == 316
    assert sum(k.startswith("MainNet.") for k in state) == 304
    lte = sorted(k for k in state if k.startswith("LTE."))
    assert lte == sorted(
        f"LTE.{name}.{p}"
        for name in ("slice1.0", "slice2.2", "slice2.5", "slice3.7", "slice3.10", "sub_mean")
        for p in ("weight", "bias")
    )
    assert sum(p.numel() for p in model.MainNet.parameters()) == 6_174_275
    assert sum(p.numel() for p in model.LTE.parameters()) == 555_340
    for name in (
        "MainNet.SFE.RBs.15.conv2.weight",
        "MainNet.RB11.15.conv1.bias",
        "MainNet.ex12.conv_merge2.weight",
        "MainNet.ex123.conv31_2.weight",
        "MainNet.RB33.3.conv2.weight",
        "MainNet.conv33_tail.weight",
        "MainNet.merge_tail.conv_tail2.weight",
    ):
        assert name in state
    assert not any(k.startswith("LTE_copy.") for k in state)
    assert any(k.startswith("LTE_copy.") for k in model.state_dict())
    assert all(not p.requires_grad for p in model.LTE_copy.parameters())
    assert not model.LTE.sub_mean.weight.requires_grad
    assert model.LTE.slice3[-1] is model.LTE.slice3._modules["11"]


@pytest.mark.parametrize(
    ("h", "w", "ref_hw", "n"),
    [(4, 4, None, 2), (3, 5, None, 1), (5, 3, (12, 20), 1), (4, 4, (8, 28), 1)],
)
def test_output_shapes(model, h, w, ref_hw, n):
    with torch.no_grad():
        out = model(*inputs(h, w, ref_hw, n=n))
    assert isinstance(out, TTSROutput)
    assert out.sr.shape == (n, 3, 4 * h, 4 * w)
    assert out.S.shape == (n, 1, h, w)
    assert out.T_lv3.shape == (n, 256, h, w)
    assert out.T_lv2.shape == (n, 128, 2 * h, 2 * w)
    assert out.T_lv1.shape == (n, 64, 4 * h, 4 * w)
    assert out.sr.abs().max() <= 1.0
    assert (out.S <= 1.0 + 1e-5).all()


def test_chunked_model_equals_dense_reference_computation(model):
    x = inputs(4, 6, (12, 20), seed=1)
    with torch.no_grad():
        chunked = model(*x)
        model.SearchTransfer.chunk = 0
        try:
            dense = model(*x)
        finally:
            model.SearchTransfer.chunk = None
    for a, b in zip(dense, chunked, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_bad_input_sizes_are_value_errors(model):
    lr, lr_up, ref, ref_du = inputs(8, 8)
    with pytest.raises(ValueError, match="lr_up must be 4x lr"):
        model(lr, lr_up[..., :28, :], ref, ref_du)
    with pytest.raises(ValueError, match="multiples of 4"):
        model(lr, lr_up, ref[..., :30, :], ref_du[..., :30, :])
    with pytest.raises(ValueError, match="differ in shape"):
        model(lr, lr_up, ref, ref_du[..., :28, :])
    with pytest.raises(ValueError, match="batch"):
        model(lr, lr_up, ref.expand(2, -1, -1, -1), ref_du)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(lr[:, :1], lr_up, ref, ref_du)


def test_training_forward_backward_reaches_mainnet_and_lte():
    model = tiny().train()
    out = model(*inputs(4, 4))
    (out.sr.mean() + out.S.mean()).backward()
    assert model.MainNet.SFE.conv_head.weight.grad is not None
    assert model.LTE.slice3._modules["10"].weight.grad.abs().sum() > 0  # via S and the textures
    assert model.LTE.sub_mean.weight.grad is None


def test_texture_features_train_mainnet_not_lte():
    model = tiny().train()
    with torch.no_grad():
        model.LTE.slice1._modules["0"].weight.add_(0.5)  # the copy must pick up the current weights
    sr = (torch.rand(1, 3, 16, 16) * 2 - 1).requires_grad_()
    lv1, lv2, lv3 = model.texture_features(sr)
    assert lv1.shape == (1, 64, 16, 16) and lv2.shape == (1, 128, 8, 8)
    assert lv3.shape == (1, 256, 4, 4)
    torch.testing.assert_close(lv3, model.LTE((sr + 1) / 2)[2])
    (lv1.mean() + lv2.mean() + lv3.mean()).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.LTE.parameters())
    assert all(p.grad is None for p in model.LTE_copy.parameters())


def test_channels_last_gives_the_same_output():
    model = tiny()
    x = inputs(4, 4, seed=2)
    with torch.no_grad():
        a = model(*x).sr
        model_cl = model.to(memory_format=torch.channels_last)
        b = model_cl(*(t.contiguous(memory_format=torch.channels_last) for t in x)).sr
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_on_cpu():
    model = tiny(search_dtype=torch.bfloat16)
    x = inputs(4, 4, seed=3)
    with torch.no_grad():
        ref = model(*x).sr
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(*x)
    assert out.sr.shape == ref.shape
    assert torch.isfinite(out.sr.float()).all()
    assert (out.sr.float() - ref).abs().mean() < 0.05


def test_missing_vgg_weights_warn_and_are_recorded(tmp_path, monkeypatch):
    monkeypatch.delenv("TTSR_VGG19_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.warns(UserWarning, match="NOT comparable"):
        model = TTSR(TINY)
    assert model.pretrained_vgg is False


@pytest.mark.slow
def test_torch_compile_matches_eager():
    # fullgraph=True: the chunked search and the gather transfer must trace without graph breaks.
    # aot_eager keeps this under a minute on 2 busy cores; Inductor (the default backend) was
    # checked by hand and compiles the same graph, but its C++ codegen takes minutes here.
    model = tiny()
    x = inputs(4, 6, (16, 20), seed=4)
    with torch.no_grad():
        eager = model(*x)
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")(*x)
    for a, b in zip(eager, compiled, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def _loss_and_grads(model: TTSR, x) -> tuple[TTSROutput, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    out = model(*x)
    (out.sr.square().mean() + out.S.mean()).backward()
    return out, {k: p.grad for k, p in model.named_parameters() if p.grad is not None}


def test_checkpointed_activations_give_the_same_outputs_and_gradients():
    model = tiny(search_chunk=None).train()
    x = inputs(4, 6, seed=5)
    plain, plain_grads = _loss_and_grads(model, x)
    model.MainNet.checkpoint_activations = True
    checkpointed, grads = _loss_and_grads(model, x)
    for a, b in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the forward is the same code
    assert set(grads) == set(plain_grads)
    assert any(k.startswith("MainNet.RB33.") for k in grads)
    assert any(k.startswith("LTE.") for k in grads)  # through the textures and S
    for name, grad in plain_grads.items():
        torch.testing.assert_close(grads[name], grad, msg=name)


def test_checkpointing_is_off_in_eval_and_without_grad(monkeypatch):
    calls = []
    monkeypatch.setattr("ttsr.model.checkpoint", lambda fn, *a, **k: calls.append(fn) or fn(*a))
    model = tiny()
    model.MainNet.checkpoint_activations = True
    x = inputs(4, 4)
    model.eval()
    model(*x)
    model.train()
    with torch.no_grad():
        model(*x)
    assert calls == []
    model(*x)
    assert len(calls) == 13  # SFE, 3 fusions, 6 residual groups, CSFI2, CSFI3, merge tail


@pytest.mark.skipif(not torch.cuda.is_available(), reason="peak memory is measured on CUDA")
def test_checkpointed_activations_need_less_peak_memory_on_cuda():
    model = TTSR(ModelConfig(n_feats=32, num_res_blocks=(2, 2, 2, 2)), vgg=RANDOM_VGG).cuda()
    x = [t.cuda() for t in inputs(32, 32, n=2)]

    def peak(checkpointed: bool) -> int:
        model.MainNet.checkpoint_activations = checkpointed
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        model(*x).sr.mean().backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()

    peak(False)  # warm-up: cuDNN workspaces, allocator
    plain, checkpointed = peak(False), peak(True)
    assert checkpointed < 0.8 * plain, (checkpointed, plain)
