"""PSNR and SSIM exactly as the reference TTSR reports them, batched and on the input's device.

The reference (``calc_psnr_and_ssim``) evaluates one image at a time on the CPU with NumPy and
OpenCV. These functions compute the same numbers for a whole batch in one pass:

- images in [-1, 1] are mapped to [0, 255] with ``(x + 1) * 127.5`` and rounded (round half to
  even, like ``torch.round``); values are *not* clamped, as in the reference;
- PSNR is taken on the luma difference: the R, G, B differences (/255) weighted by
  65.738/256, 129.057/256, 25.064/256 and summed (the +16 offset of Y cancels in a
  difference); PSNR = -10 * log10(mean(diff^2)) per image. Identical images give ``inf``;
- SSIM is taken on Y = (65.738 R + 129.057 G + 25.064 B) / 256 + 16 with an 11x11 Gaussian
  window (sigma 1.5), on the valid region only (no padding), C1 = (0.01 * 255)^2,
  C2 = (0.03 * 255)^2, averaged over the map per image. No border is cropped.

The second convention, ``psnr_rgb`` / ``ssim_rgb``, is MMagic's and BasicSR's (``crop_border=4``,
``test_y_channel=False``): the same rounded [0, 255] values, a ``RGB_CROP``-pixel border removed
on every side, PSNR on the mean squared error over the three RGB channels, SSIM computed on each
channel with the same window and constants and averaged over the channels. Published TTSR numbers
in that convention (MMagic's 25.24 dB on CUFED5) are *not* comparable with the Y-channel ones.

Arithmetic is float64 (float32 on devices without float64 support, e.g. MPS) so that the
values agree with the NumPy reference and scikit-image to well below the printed precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# ITU-R BT.601 luma weights for 8-bit studio range, as the reference (and MATLAB rgb2ycbcr) use.
_LUMA = (65.738 / 256.0, 129.057 / 256.0, 25.064 / 256.0)
_LUMA_OFFSET = 16.0

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_C1 = (0.01 * 255.0) ** 2
_C2 = (0.03 * 255.0) ** 2
RGB_CROP = 4  # border (pixels per side) MMagic / BasicSR remove before their RGB metrics


def _work_dtype(device: torch.device) -> torch.dtype:
    # MPS has no float64; float32 is still within ~1e-4 of the reference there.
    return torch.float32 if device.type == "mps" else torch.float64


def _check_pair(sr: torch.Tensor, hr: torch.Tensor) -> None:
    if sr.shape != hr.shape:
        raise ValueError(
            f"sr and hr must have the same shape, got sr {tuple(sr.shape)} and hr {tuple(hr.shape)}"
        )
    if sr.dim() != 4 or sr.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(sr.shape)}")


def to_255(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> rounded [0, 255] values in the working dtype. (N, 3, H, W) -> same."""
    return torch.round((x.to(_work_dtype(x.device)) + 1.0) * 127.5)


def _luma(x255: torch.Tensor) -> torch.Tensor:
    """Weighted channel sum without the offset. (N, 3, H, W) in [0, 255] -> (N, 1, H, W)."""
    w = torch.tensor(_LUMA, dtype=x255.dtype, device=x255.device).view(1, 3, 1, 1)
    return (x255 * w).sum(dim=1, keepdim=True)


def to_y(x: torch.Tensor) -> torch.Tensor:
    """The reference's Y channel (16..235) of [-1, 1] RGB. (N, 3, H, W) -> (N, 1, H, W)."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(x.shape)}")
    return _luma(to_255(x)) + _LUMA_OFFSET


def psnr(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB on the luma difference. sr, hr: (N, 3, H, W) in [-1, 1] -> (N,).

    Identical images give ``inf`` (the reference would divide by zero); averaging a batch that
    contains one then gives ``inf`` too, so callers that average should be aware of it.
    """
    _check_pair(sr, hr)
    diff = _luma(to_255(sr) - to_255(hr)) / 255.0  # (N, 1, H, W)
    mse = diff.pow(2).mean(dim=(1, 2, 3))
    return -10.0 * torch.log10(mse)


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian of SSIM_WINDOW taps. -> (SSIM_WINDOW,)."""
    r = (SSIM_WINDOW - 1) / 2
    t = torch.arange(SSIM_WINDOW, dtype=dtype, device=device) - r
    g = torch.exp(-(t**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _blur_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter, valid region. (B, 1, H, W) -> (B, 1, H-10, W-10)."""
    x = F.conv2d(x, g.view(1, 1, -1, 1))
    return F.conv2d(x, g.view(1, 1, 1, -1))


def _ssim_planes(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM map per plane, valid region. a, b: (B, 1, H, W) in [0, 255] -> (B,)."""
    n, _, h, w = a.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    g = _gaussian_window(a.dtype, a.device)
    # One conv pass for all five statistics: stack them along the batch dimension.
    stats = _blur_valid(torch.cat([a, b, a * a, b * b, a * b]), g)
    mu1, mu2, e11, e22, e12 = stats.split(n)
    mu11, mu22, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    var1, var2, cov = e11 - mu11, e22 - mu22, e12 - mu12
    num = (2 * mu12 + _C1) * (2 * cov + _C2)
    den = (mu11 + mu22 + _C1) * (var1 + var2 + _C2)
    return (num / den).mean(dim=(1, 2, 3))


def ssim(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM on Y. sr, hr: (N, 3, H, W) in [-1, 1], H, W >= 11 -> (N,)."""
    _check_pair(sr, hr)
    return _ssim_planes(to_y(sr), to_y(hr))


def _cropped_255(x: torch.Tensor, border: int) -> torch.Tensor:
    """Rounded [0, 255] values without ``border`` pixels on each side. (N, 3, H, W) -> same."""
    h, w = x.shape[-2:]
    if 2 * border >= min(h, w):
        raise ValueError(f"a {border}-pixel border crop leaves nothing of a {h}x{w} image")
    return to_255(x[..., border : h - border, border : w - border])


def psnr_rgb(sr: torch.Tensor, hr: torch.Tensor, border: int = RGB_CROP) -> torch.Tensor:
    """Per-image PSNR in dB on RGB after a border crop (MMagic's convention).
    sr, hr: (N, 3, H, W) in [-1, 1] -> (N,); identical images give ``inf``."""
    _check_pair(sr, hr)
    diff = (_cropped_255(sr, border) - _cropped_255(hr, border)) / 255.0
    return -10.0 * torch.log10(diff.pow(2).mean(dim=(1, 2, 3)))


def ssim_rgb(sr: torch.Tensor, hr: torch.Tensor, border: int = RGB_CROP) -> torch.Tensor:
    """Per-image SSIM, the mean of the three channels' SSIM after a border crop (MMagic's
    convention). sr, hr: (N, 3, H, W) in [-1, 1], H, W >= 11 + 2 * border -> (N,)."""
    _check_pair(sr, hr)
    n = sr.shape[0]
    a, b = _cropped_255(sr, border), _cropped_255(hr, border)
    planes = _ssim_planes(a.flatten(0, 1).unsqueeze(1), b.flatten(0, 1).unsqueeze(1))
    return planes.view(n, 3).mean(dim=1)
