import pytest
import torch
from torch import nn

from ttsr.train.discriminator import Discriminator


def reference_parameter_count(crop: int) -> int:
    """The reference's critic: convs, FC(in_size//32 * in_size//32 * 512 -> 1024), FC(1024 -> 1)."""
    widths = [(3, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
    widths += [(128, 256), (256, 256), (256, 512), (512, 512)]
    convs = sum(c_in * c_out * 9 + c_out for c_in, c_out in widths)
    fc_in = crop // 32 * crop // 32 * 512  # the reference's expression, precedence and all
    return convs + fc_in * 1024 + 1024 + 1024 + 1


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class PooledDiscriminator(nn.Module):
    """The previous design: the same layers with an adaptive 5x5 pool in front of the FC."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for width in (32, 64, 128, 256, 512):
            layers += [nn.Conv2d(c_in, width, 3, 1, 1), nn.LeakyReLU(0.2)]
            layers += [nn.Conv2d(width, width, 3, 2, 1), nn.LeakyReLU(0.2)]
            c_in = width
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(5)
        self.head = nn.Sequential(nn.Linear(512 * 25, 1024), nn.LeakyReLU(0.2), nn.Linear(1024, 1))

    def forward(self, x):
        return self.head(self.pool(self.body(x)).flatten(1))


def test_reference_parameter_counts_and_layout():
    assert reference_parameter_count(160) == 17_821_473  # REFERENCE.md
    assert reference_parameter_count(64) == 6_811_425  # "6.8 M at a 64-px crop"
    d = Discriminator()
    assert d.crop_size == 160 and count(d) == 17_821_473
    assert count(Discriminator(crop_size=64)) == 6_811_425
    assert count(Discriminator(crop_size=256)) == reference_parameter_count(256)
    convs = [m for m in d.body if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2] * 5
    assert d.head[0].in_features == 512 * 5 * 5
    assert Discriminator(crop_size=64).head[0].in_features == 512 * 2 * 2


@pytest.mark.parametrize("crop", [32, 64, 160])
def test_output_shape(crop):
    torch.manual_seed(0)
    d = Discriminator(crop_size=crop)
    assert d(torch.randn(2, 3, crop, crop)).shape == (2, 1)


def test_same_weights_and_outputs_as_the_pooled_design_at_160():
    torch.manual_seed(0)
    old = PooledDiscriminator()
    new = Discriminator(crop_size=160)
    assert set(new.state_dict()) == set(old.state_dict())  # body.*, head.*: old files load
    new.load_state_dict(old.state_dict())
    x = torch.randn(2, 3, 160, 160)
    assert torch.equal(new(x), old(x))


def test_config_rebuilds_the_same_shape():
    d = Discriminator(crop_size=64)
    assert d.config() == {"in_channels": 3, "crop_size": 64}
    again = Discriminator(**d.config())
    again.load_state_dict(d.state_dict())  # raises if any shape differs
    with pytest.raises(RuntimeError, match="size mismatch"):
        Discriminator(crop_size=160).load_state_dict(d.state_dict())


@pytest.mark.parametrize("crop", [0, 48, 100, 162])
def test_crop_size_must_be_a_multiple_of_32(crop):
    with pytest.raises(ValueError, match=f"crop_size must be a positive multiple of 32.*{crop}"):
        Discriminator(crop_size=crop)


def test_input_of_another_size_is_a_value_error():
    d = Discriminator(crop_size=64)
    for shape in [(1, 3, 160, 160), (1, 3, 64, 32), (1, 1, 64, 64), (3, 64, 64)]:
        with pytest.raises(ValueError, match=r"built for \(N, 3, 64, 64\).*crop_size=64"):
            d(torch.zeros(shape))
