import pytest
import torch
from torch import nn
from torchvision.models import vgg19

from ttsr.train import losses


@pytest.fixture(scope="module")
def features() -> nn.Sequential:
    torch.manual_seed(0)
    return vgg19(weights=None).features


def test_reconstruction_is_l1():
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert losses.reconstruction_loss(a, b).item() == pytest.approx(0.5)


def test_perceptual_uses_relu5_1_frozen_and_trains_sr_only(features):
    loss_fn = losses.PerceptualLoss(features=features)
    assert len(loss_fn.vgg) == 30 and isinstance(loss_fn.vgg[-1], nn.ReLU)
    assert not any(p.requires_grad for p in loss_fn.parameters())
    torch.manual_seed(0)
    sr = torch.rand(2, 3, 32, 32, requires_grad=True)
    hr = torch.rand(2, 3, 32, 32)
    value = loss_fn(sr * 2 - 1, hr * 2 - 1)
    value.backward()
    assert value.item() > 0
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert losses.PerceptualLoss(features=features)(hr, hr).item() == 0.0
    # The module stays in eval mode when the trainer switches everything to train mode.
    loss_fn.train()
    assert not loss_fn.vgg.training


def test_perceptual_normalises_like_imagenet(features):
    loss_fn = losses.PerceptualLoss(features=features)
    x = torch.full((1, 3, 2, 2), -1.0)
    out = loss_fn.normalize(x)
    expected = -torch.tensor(losses.IMAGENET_MEAN) / torch.tensor(losses.IMAGENET_STD)
    assert torch.allclose(out[0, :, 0, 0], expected)


def _levels(n=2, c=(4, 6, 8), h=16, requires_grad=False):
    return tuple(
        torch.randn(n, ci, h // s, h // s, requires_grad=requires_grad)
        for ci, s in zip(c, (1, 2, 4), strict=True)
    )


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_tpl_mean_over_levels_detaches_textures(kind):
    torch.manual_seed(0)
    sr_f = _levels(requires_grad=True)
    t = _levels(requires_grad=True)
    value = losses.transferal_perceptual_loss(sr_f, t, kind=kind)
    dist = torch.nn.functional.l1_loss if kind == "l1" else torch.nn.functional.mse_loss
    expected = sum(dist(a, b) for a, b in zip(sr_f, t, strict=True)) / 3
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    assert all(f.grad is not None for f in sr_f)
    assert all(x.grad is None for x in t)  # T is detached: this loss does not train LTE


def test_tpl_weighting_by_sigmoid_s():
    torch.manual_seed(0)
    sr_f, t = _levels(), _levels()
    S = torch.randn(2, 1, 4, 4, requires_grad=True)
    plain = losses.transferal_perceptual_loss(sr_f, t, kind="l2")
    weighted = losses.transferal_perceptual_loss(sr_f, t, S, kind="l2")
    assert weighted.item() != pytest.approx(plain.item())
    # A huge S gives sigmoid = 1: the same as no weighting.
    big = losses.transferal_perceptual_loss(sr_f, t, torch.full((2, 1, 4, 4), 50.0), kind="l2")
    assert big.item() == pytest.approx(plain.item(), rel=1e-5)
    assert not weighted.requires_grad  # nothing here needs grad: S detached too
    with pytest.raises(ValueError, match="tpl_loss"):
        losses.transferal_perceptual_loss(sr_f, t, kind="l3")


def test_gradient_penalty_of_a_linear_critic():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 1, bias=False))
    real, fake = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4)
    gp = losses.gradient_penalty(critic, real, fake)
    w_norm = critic[1].weight.norm()
    assert gp.item() == pytest.approx(((w_norm - 1) ** 2).item(), rel=1e-5)
    gp.backward()  # the penalty trains the critic (double backward)
    assert critic[1].weight.grad is not None and critic[1].weight.grad.abs().sum() > 0


def test_wgan_terms():
    d_real, d_fake = torch.tensor([[2.0], [4.0]]), torch.tensor([[1.0], [-1.0]])
    assert losses.discriminator_wgan_loss(d_real, d_fake).item() == pytest.approx(-3.0)
    assert losses.generator_adversarial_loss(d_fake).item() == pytest.approx(0.0)


def test_perceptual_distance(features):
    dist = losses.PerceptualDistance(features=features)
    torch.manual_seed(0)
    a = torch.rand(2, 3, 32, 32) * 2 - 1
    b = (a + 0.3 * torch.randn_like(a)).clamp(-1, 1)
    c = (a + 0.6 * torch.randn_like(a)).clamp(-1, 1)
    same, near, far = dist(a, a), dist(a, b), dist(a, c)
    assert same.shape == (2,) and torch.all(same.abs() < 1e-6)
    assert torch.all(near > 0) and torch.all(far > near)


# --- gradient flow through a tiny TTSR -----------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model():
    import warnings

    from ttsr.model import RANDOM_VGG, TTSR, ModelConfig

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TTSR(ModelConfig(n_feats=8, num_res_blocks=(1, 1, 1, 1)), vgg=RANDOM_VGG)
    return model


def _forward(model):
    torch.manual_seed(1)
    lr = torch.rand(2, 3, 8, 8) * 2 - 1
    up = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic").clamp(-1, 1)
    ref = torch.rand(2, 3, 32, 32) * 2 - 1
    model.zero_grad(set_to_none=True)
    return model(lr, up, ref, ref), torch.rand(2, 3, 32, 32) * 2 - 1


def _grad_norm(module):
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return sum(float(g.abs().sum()) for g in grads)


def test_tpl_trains_mainnet_not_lte_directly(tiny_model):
    """All of the LTE's TPL gradient comes back through SR -> MainNet -> T (as for every loss);
    the direct path that would pull T towards the SR's features is cut, LTE_copy gets nothing."""
    out, _ = _forward(tiny_model)
    T = (out.T_lv1, out.T_lv2, out.T_lv3)
    feats = tiny_model.texture_features(out.sr)
    lte = [p for p in tiny_model.LTE.parameters() if p.requires_grad]
    loss = losses.transferal_perceptual_loss(feats, T, out.S)
    (g_sr,) = torch.autograd.grad(loss, out.sr, retain_graph=True)
    via_sr = torch.autograd.grad((out.sr * g_sr).sum(), lte, retain_graph=True)
    total = torch.autograd.grad(loss, lte, retain_graph=True)
    for a, b in zip(total, via_sr, strict=True):
        assert torch.allclose(a, b, atol=1e-7, rtol=1e-5)
    # Without the detach (the reference's behaviour) the LTE gets an extra, direct gradient.
    undetached = sum(torch.nn.functional.mse_loss(f, t) for f, t in zip(feats, T, strict=True)) / 3
    direct = torch.autograd.grad(undetached, lte, retain_graph=True)
    (g_sr2,) = torch.autograd.grad(undetached, out.sr, retain_graph=True)
    via_sr2 = torch.autograd.grad((out.sr * g_sr2).sum(), lte, retain_graph=True)
    assert any(not torch.allclose(a, b, atol=1e-7) for a, b in zip(direct, via_sr2, strict=True))
    loss.backward()
    assert _grad_norm(tiny_model.MainNet) > 0 and _grad_norm(tiny_model.LTE_copy) == 0


def test_reconstruction_trains_mainnet_and_lte(tiny_model):
    out, hr = _forward(tiny_model)
    losses.reconstruction_loss(out.sr, hr).backward()
    assert _grad_norm(tiny_model.MainNet) > 0 and _grad_norm(tiny_model.LTE) > 0


def test_perceptual_and_adversarial_reach_mainnet(tiny_model, features):
    from ttsr.train.discriminator import Discriminator

    out, hr = _forward(tiny_model)
    losses.PerceptualLoss(features=features)(out.sr, hr).backward()
    assert _grad_norm(tiny_model.MainNet) > 0

    out, hr = _forward(tiny_model)
    critic = Discriminator(crop_size=32)
    critic.requires_grad_(False)
    losses.generator_adversarial_loss(critic(out.sr)).backward()
    assert _grad_norm(tiny_model.MainNet) > 0
    assert all(p.grad is None for p in critic.parameters())
