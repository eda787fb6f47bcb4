"""ttsr.metrics against scikit-image: the reference's Y channel, and RGB with a 4-px border crop."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from skimage.color import gray2rgb
from skimage.filters import gaussian
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ttsr.metrics import RGB_CROP, psnr, psnr_rgb, ssim, ssim_rgb, to_y

LUMA = np.array([65.738, 129.057, 25.064]) / 256.0


def _tensor(img: np.ndarray) -> torch.Tensor:
    """uint8/float HWC in [0, 255] -> (1, 3, H, W) float32 in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)
    return (x / 127.5 - 1.0).unsqueeze(0)


def _y_ref(x: torch.Tensor) -> np.ndarray:
    """The reference's preprocessing, in NumPy: (3, H, W) in [-1, 1] -> Y (H, W) float64."""
    rgb = np.transpose(((x.double() + 1.0) * 127.5).round().numpy(), (1, 2, 0))
    return rgb @ LUMA + 16.0


def _sk_psnr(sr: torch.Tensor, hr: torch.Tensor) -> float:
    return peak_signal_noise_ratio(_y_ref(hr), _y_ref(sr), data_range=255)


def _sk_ssim(sr: torch.Tensor, hr: torch.Tensor) -> float:
    # gaussian_weights with sigma 1.5 gives an 11x11 window; skimage averages the map after
    # cropping (win_size - 1) // 2 = 5 px, which is exactly the reference's valid region.
    return structural_similarity(
        _y_ref(sr),
        _y_ref(hr),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )


def _rgb_c4(x: torch.Tensor) -> np.ndarray:
    """MMagic's preprocessing, in NumPy: (3, H, W) in [-1, 1] -> rounded RGB (H-8, W-8, 3)."""
    rgb = np.transpose(((x.double() + 1.0) * 127.5).round().numpy(), (1, 2, 0))
    return rgb[4:-4, 4:-4]


def _sk_psnr_rgb(sr: torch.Tensor, hr: torch.Tensor) -> float:
    return peak_signal_noise_ratio(_rgb_c4(hr), _rgb_c4(sr), data_range=255)


def _sk_ssim_rgb(sr: torch.Tensor, hr: torch.Tensor) -> float:
    # channel_axis: skimage computes SSIM per channel and averages, as MMagic/BasicSR do
    return structural_similarity(
        _rgb_c4(sr),
        _rgb_c4(hr),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=-1,
    )


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _real_pairs() -> list:
    rng = np.random.default_rng(0)
    images = {
        "astronaut": skdata.astronaut()[:160, 100:260],
        "camera": gray2rgb(skdata.camera())[200:296, 200:328],
        "coffee": skdata.coffee()[100:228, 200:300],
        "chelsea": skdata.chelsea()[50:150, 100:250],
    }
    pairs = []
    for name, hr in images.items():
        blurred = gaussian(hr, sigma=1.2, channel_axis=-1, preserve_range=True)
        noisy = hr + rng.normal(0, 8, hr.shape)
        pairs.append(pytest.param(hr, np.clip(blurred, 0, 255), id=f"{name}-blur"))
        pairs.append(pytest.param(hr, np.clip(noisy, 0, 255), id=f"{name}-noise"))
        pairs.append(pytest.param(hr, _jpeg(hr, 20), id=f"{name}-jpeg"))
    return pairs


@pytest.mark.parametrize("hr,sr", _real_pairs())
def test_real_images_match_skimage(hr, sr):
    hr_t, sr_t = _tensor(hr), _tensor(sr)
    p, s = psnr(sr_t, hr_t).item(), ssim(sr_t, hr_t).item()
    assert p == pytest.approx(_sk_psnr(sr_t[0], hr_t[0]), abs=1e-3)
    assert s == pytest.approx(_sk_ssim(sr_t[0], hr_t[0]), abs=1e-4)
    # sanity: the degradations are real, not near-identical images
    assert 15 < p < 45 and 0.3 < s < 0.999


@pytest.mark.parametrize("hr,sr", _real_pairs())
def test_rgb_crop4_matches_skimage_on_cropped_rgb(hr, sr):
    hr_t, sr_t = _tensor(hr), _tensor(sr)
    p, s = psnr_rgb(sr_t, hr_t).item(), ssim_rgb(sr_t, hr_t).item()
    assert p == pytest.approx(_sk_psnr_rgb(sr_t[0], hr_t[0]), abs=1e-3)
    assert s == pytest.approx(_sk_ssim_rgb(sr_t[0], hr_t[0]), abs=1e-4)
    assert 15 < p < 45 and 0.3 < s < 0.999
    # a different convention gives a different number (else the second pair would be useless)
    assert abs(p - psnr(sr_t, hr_t).item()) > 0.05


def test_rgb_crop4_batch_and_border():
    torch.manual_seed(2)
    hr = torch.rand(3, 3, 36, 44) * 2 - 1
    sigma = torch.tensor([0.02, 0.1, 0.3]).view(3, 1, 1, 1)
    sr = (hr + sigma * torch.randn_like(hr)).clamp(-1, 1)
    p, s = psnr_rgb(sr, hr), ssim_rgb(sr, hr)
    assert p.shape == (3,) and s.shape == (3,) and RGB_CROP == 4
    for i in range(3):
        assert p[i].item() == pytest.approx(_sk_psnr_rgb(sr[i], hr[i]), abs=1e-3)
        assert s[i].item() == pytest.approx(_sk_ssim_rgb(sr[i], hr[i]), abs=1e-4)
    # damage confined to the 4-px border does not count
    bordered = hr.clone()
    bordered[..., :4, :] = -1.0
    bordered[..., :, -4:] = 1.0
    assert torch.isinf(psnr_rgb(bordered, hr)).all()
    assert torch.allclose(ssim_rgb(bordered, hr), torch.ones(3, dtype=torch.float64))
    assert torch.isfinite(psnr(bordered, hr)).all()  # the reference convention sees it


def test_rgb_crop4_too_small():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_rgb(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="border crop"):
        psnr_rgb(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_random_batch_gives_per_image_values():
    torch.manual_seed(0)
    hr = torch.rand(4, 3, 40, 52) * 2 - 1
    # different noise levels per image so a batch-mean bug cannot pass
    sigma = torch.tensor([0.02, 0.05, 0.1, 0.3]).view(4, 1, 1, 1)
    sr = (hr + sigma * torch.randn_like(hr)).clamp(-1, 1)
    p, s = psnr(sr, hr), ssim(sr, hr)
    assert p.shape == (4,) and s.shape == (4,)
    for i in range(4):
        assert p[i].item() == pytest.approx(_sk_psnr(sr[i], hr[i]), abs=1e-3)
        assert s[i].item() == pytest.approx(_sk_ssim(sr[i], hr[i]), abs=1e-4)
        # each image alone gives the same value as in the batch
        assert psnr(sr[i : i + 1], hr[i : i + 1]).item() == pytest.approx(p[i].item(), abs=1e-9)
        assert ssim(sr[i : i + 1], hr[i : i + 1]).item() == pytest.approx(s[i].item(), abs=1e-9)
    assert bool((p[:-1] > p[1:]).all()) and bool((s[:-1] > s[1:]).all())


def test_psnr_is_the_reference_formula_on_rounded_values():
    # A uniform offset of exactly 10 grey levels in every channel: the luma difference is
    # 10 * (65.738 + 129.057 + 25.064) / 256 / 255 everywhere.
    hr = torch.full((1, 3, 16, 16), 100.0)
    sr = hr + 10.0
    expected = -10 * math.log10((10 * LUMA.sum() / 255) ** 2)
    got = psnr(sr / 127.5 - 1, hr / 127.5 - 1).item()
    assert got == pytest.approx(expected, abs=1e-9)
    # sub-level noise disappears in the rounding, as in the reference
    jitter = torch.full_like(hr, 0.3 / 127.5)
    assert psnr(sr / 127.5 - 1 + jitter, hr / 127.5 - 1).item() == pytest.approx(got, abs=1e-9)


def test_identical_images():
    torch.manual_seed(1)
    x = torch.rand(2, 3, 24, 24) * 2 - 1
    assert torch.isinf(psnr(x, x)).all() and (psnr(x, x) > 0).all()
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))


def test_to_y_range_and_shape():
    x = torch.tensor([-1.0, 1.0]).view(2, 1, 1, 1).expand(2, 3, 4, 5)
    y = to_y(x)
    assert y.shape == (2, 1, 4, 5)
    assert y[0].unique().item() == pytest.approx(16.0)
    assert y[1].unique().item() == pytest.approx(16.0 + 255 * LUMA.sum())


def test_shape_mismatch_names_both_shapes():
    a, b = torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 20)
    for fn in (psnr, ssim):
        with pytest.raises(ValueError, match=r"\(1, 3, 16, 16\).*\(1, 3, 16, 20\)"):
            fn(a, b)


def test_bad_layout_and_too_small():
    with pytest.raises(ValueError, match="N, 3, H, W"):
        psnr(torch.zeros(3, 16, 16), torch.zeros(3, 16, 16))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 10, 32), torch.zeros(1, 3, 10, 32))


def test_device_preserved_and_input_untouched():
    torch.manual_seed(2)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    hr = torch.rand(2, 3, 20, 20) * 2 - 1
    sr = hr.flip(-1)
    before = sr.clone()
    for dev in devices:
        p, s = psnr(sr.to(dev), hr.to(dev)), ssim(sr.to(dev), hr.to(dev))
        assert p.device.type == dev and s.device.type == dev
        assert torch.allclose(p.cpu(), psnr(sr, hr)) and torch.allclose(s.cpu(), ssim(sr, hr))
    assert torch.equal(sr, before)
