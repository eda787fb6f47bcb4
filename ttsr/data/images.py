"""Decoding arbitrary image files into square 8-bit RGB (16-bit, grayscale, palettes, alpha,
EXIF rotation, non-square: converted and noted; else `UnusableImage` with the manifest's
reason), and the PIL resizes the loader uses."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pnm"}
)

# Downscaling for prepared sizes: LANCZOS with a box pre-reduction (reducing_gap) is both faster
# and, at 1024 -> 160, visually indistinguishable from plain LANCZOS.
_REDUCING_GAP = 3.0


class UnusableImage(Exception):
    """A source file that cannot become an RGB image; str(exc) is the manifest's reason."""


def decode_rgb_square(data: bytes) -> tuple[Image.Image, list[str]]:
    """Decode file bytes to an 8-bit RGB image, center-cropped to a square.

    Returns the image and a list of conversions applied (e.g. ``["I;16->8bit", "crop 600x400"]``).
    Raises `UnusableImage` for zero-byte, non-image, corrupt or truncated data.
    """
    if not data:
        raise UnusableImage("zero-byte file")
    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # Image.open only reads the header; truncation shows up here
    except UnidentifiedImageError:
        raise UnusableImage("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as exc:
        raise UnusableImage(f"too large: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a skip, never an abort
        raise UnusableImage(f"corrupt or truncated: {type(exc).__name__}: {exc}") from None
    notes: list[str] = []
    try:
        transposed = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose the pixels
        transposed = img
    if transposed is not img:
        notes.append("exif-rotate")
        img = transposed
    img = _to_rgb8(img, notes)
    w, h = img.size
    if w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
        notes.append(f"crop {w}x{h}")
    if img.size[0] < 4:
        raise UnusableImage(f"too small ({w}x{h})")
    return img, notes


def _to_rgb8(img: Image.Image, notes: list[str]) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    notes.append(f"{mode}->RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        # Pillow has no 16-bit -> 8-bit conversion that rescales (convert("L") clips at 255).
        arr = np.asarray(img).astype(np.float64)
        if mode != "I" or arr.max() > 255:
            arr = arr * (255.0 / 65535.0)
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info
    if has_alpha:
        # Composite on white: what a viewer sees; dropping alpha would expose hidden colours.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def resize_to(img: Image.Image, size: int) -> Image.Image:
    """Square RGB image to ``size`` px: LANCZOS down (high quality), BICUBIC up."""
    if img.size == (size, size):
        return img
    if img.size[0] > size:
        return img.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
    return img.resize((size, size), Image.Resampling.BICUBIC)


def bicubic(img: Image.Image, size: int) -> Image.Image:
    """PIL BICUBIC to ``size`` x ``size``, the reference's resize for LR / LR_up / Ref_downup."""
    return img.resize((size, size), Image.Resampling.BICUBIC)


def encode_png(img: Image.Image, compress_level: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()
