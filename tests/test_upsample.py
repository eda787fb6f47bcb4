"""ttsr/upsample.py: bicubic upsampling by convolutions equals F.interpolate's (values and
gradients, fp32 rounding), and TTSR computes the same with its fast kernels on and off."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ttsr.model import RANDOM_VGG, TTSR, ModelConfig, bicubic
from ttsr.upsample import bicubic_by_convolution, phase_weights


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 64, 10, 10), (1, 1, 1, 1), (1, 2, 2, 3)])
def test_equals_interpolate_values_and_gradients(scale, shape):
    g = torch.Generator().manual_seed(sum(shape) + scale)
    x = torch.randn(shape, generator=g, requires_grad=True)
    expected = F.interpolate(x, scale_factor=scale, mode="bicubic")
    got = bicubic_by_convolution(x, scale)
    assert got.shape == expected.shape and got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    grad_out = torch.randn(expected.shape, generator=g)
    (expected_grad,) = torch.autograd.grad(expected, x, grad_out)
    (grad,) = torch.autograd.grad(got, x, grad_out)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-5)


def test_phase_weights_are_the_cubic_convolution_weights():
    # s = 2: outputs sit 1/4 before (phase 0) and after (phase 1) their input pixel.
    assert phase_weights(2)[0] == pytest.approx(
        (-0.03515625, 0.26171875, 0.87890625, -0.10546875, 0)
    )
    assert phase_weights(2)[1] == phase_weights(2)[0][::-1]
    for scale in (1, 2, 3, 4):
        for row in phase_weights(scale):
            assert sum(row) == pytest.approx(1.0)  # constant images stay constant
    assert phase_weights(1)[0] == (0.0, 0.0, 1.0, 0.0, 0.0)


def test_model_bicubic_uses_convolutions_only_for_fp32_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "ttsr.model.bicubic_by_convolution", lambda x, s: calls.append(x.dtype) or x
    )
    x = torch.rand(1, 2, 4, 4)
    bicubic(x, 2)
    bicubic(x.double(), 2, fast=True)
    bicubic(x.bfloat16(), 2, fast=True)
    assert calls == []
    bicubic(x, 2, fast=True)
    assert calls == [torch.float32]


def test_ttsr_with_fast_kernels_computes_the_same():
    torch.manual_seed(0)
    model = TTSR(ModelConfig(n_feats=8, num_res_blocks=(1, 2, 1, 2)), vgg=RANDOM_VGG).train()
    g = torch.Generator().manual_seed(3)
    x = [torch.rand(2, 3, 5, 6, generator=g) * 2 - 1]
    x += [torch.rand(2, 3, 20, 24, generator=g) * 2 - 1 for _ in range(3)]
    outputs, grads = [], []
    for fast in (False, True):
        model.use_fast_kernels(fast)
        model.zero_grad(set_to_none=True)
        out = model(*x)
        out.sr.square().mean().backward()
        outputs.append(out.sr.detach())
        grads.append({k: p.grad for k, p in model.named_parameters() if p.grad is not None})
    assert model.MainNet.RB33[0].fast_kernels and model.MainNet.ex123.fast_kernels
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)
