import torch

from ttsr.discriminator import Discriminator


def test_reference_parameter_count_and_layout():
    d = Discriminator()
    assert sum(p.numel() for p in d.parameters()) == 17_821_473  # the reference's count
    convs = [m for m in d.body if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2] * 5
    assert d.head[0].in_features == 512 * 5 * 5


def test_any_resolution_and_pool_is_identity_at_160():
    torch.manual_seed(0)
    d = Discriminator()
    for size in (32, 48, 160):
        assert d(torch.randn(2, 3, size, size)).shape == (2, 1)
    x = torch.randn(1, 3, 160, 160)
    h = d.body(x)
    assert h.shape[-2:] == (5, 5) and torch.equal(d.pool(h), h)
