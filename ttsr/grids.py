"""Sample grids: one row per sample, columns LR-upsampled | Ref | SR | HR, saved as PNG."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

COLUMNS = ("LR_up", "Ref", "SR", "HR")
HEADERS = ("LR", "Ref", "SR", "HR")  # "LR" is drawn with an up arrow: bicubic-upsampled LR
PAD = 2  # white pixels between tiles
DISPLAY_TILE = 128  # px: the smallest tile side a displayed grid is upscaled to


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> uint8 HWC-ready values. (..., 3, H, W) -> same shape, uint8."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


def sample_grid(
    lr_up: torch.Tensor, ref: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor
) -> Image.Image:
    """Four (N, 3, H, W) batches in [-1, 1] -> an RGB image of N rows and 4 columns."""
    n, _, h, w = hr.shape
    for name, t in zip(COLUMNS, (lr_up, ref, sr, hr), strict=True):
        if t.shape != hr.shape:
            raise ValueError(
                f"sample grid: {name} has shape {tuple(t.shape)}, HR {tuple(hr.shape)}"
            )
    canvas = torch.full((3, n * h + (n + 1) * PAD, 4 * w + 5 * PAD), 255, dtype=torch.uint8)
    for row in range(n):
        for col, t in enumerate((lr_up, ref, sr, hr)):
            y, x = PAD + row * (h + PAD), PAD + col * (w + PAD)
            canvas[:, y : y + h, x : x + w] = to_uint8(t[row].cpu())
    return Image.fromarray(canvas.permute(1, 2, 0).numpy(), mode="RGB")


def save_sample_grid(
    path: str | Path, lr_up: torch.Tensor, ref: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor
) -> Path:
    """Write the grid as PNG (parent directories created). -> the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample_grid(lr_up, ref, sr, hr).save(path, format="PNG")
    return path


def first_rows(grid: Image.Image, rows: int) -> Image.Image:
    """The first ``rows`` rows of a sample grid (square tiles, 4 columns); whole if shorter."""
    side = (grid.width - 5 * PAD) // 4
    height = rows * (side + PAD) + PAD
    return grid if grid.height <= height else grid.crop((0, 0, grid.width, height))


def display_grid(grid: Image.Image, rows: int) -> Image.Image:
    """A sample grid as a person looks at it (MLflow's image cards, the HTML report): its first
    ``rows`` rows, upscaled by a whole factor with nearest-neighbour pixels (no smoothing: what
    is seen is what the model made) until a tile is at least `DISPLAY_TILE` px, under a header
    row naming the columns LR↑ | Ref | SR | HR."""
    grid = first_rows(grid.convert("RGB"), rows)
    side = (grid.width - 5 * PAD) // 4
    scale = max(1, -(-DISPLAY_TILE // max(side, 1)))  # ceil
    big = grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST)
    font = ImageFont.load_default(size=max(12, min(24, side * scale // 8)))
    band = int(font.size * 1.8)
    out = Image.new("RGB", (big.width, big.height + band), "white")
    out.paste(big, (0, band))
    draw = ImageDraw.Draw(out)
    for col, name in enumerate(HEADERS):
        x0 = (PAD + col * (side + PAD)) * scale
        width = draw.textlength(name, font=font)
        x = x0 + (side * scale - width - (font.size // 2 if col == 0 else 0)) / 2
        y = (band - font.size) / 2
        draw.text((x, y), name, fill="black", font=font)
        if col == 0:  # the font has no arrow glyph: draw ↑ after "LR"
            ax, top, bottom = x + width + font.size * 0.35, y + font.size * 0.1, y + font.size
            draw.line([(ax, top), (ax, bottom)], fill="black", width=max(1, font.size // 10))
            head = font.size * 0.3
            draw.polygon([(ax - head, top + head), (ax + head, top + head), (ax, top)], "black")
    return out
