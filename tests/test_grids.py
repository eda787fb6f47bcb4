import torch
from PIL import Image

from ttsr.grids import PAD, first_rows, sample_grid, save_sample_grid


def test_grid_layout(tmp_path):
    n, h = 3, 8
    cols = [torch.full((n, 3, h, h), v) for v in (-1.0, -0.5, 0.5, 1.0)]
    path = save_sample_grid(tmp_path / "s" / "g.png", *cols)
    img = Image.open(path)
    assert img.size == (4 * h + 5 * PAD, n * h + (n + 1) * PAD)
    px = img.load()
    assert px[PAD, PAD] == (0, 0, 0)  # LR_up column at -1
    assert px[PAD + 3 * (h + PAD), PAD] == (255, 255, 255)  # HR column at +1
    assert px[PAD + 2 * (h + PAD), PAD + 2 * (h + PAD)] == (191, 191, 191)  # SR, last row


def test_first_rows_keeps_whole_rows():
    n, h = 5, 8
    rows = torch.linspace(-1, 1, n).view(n, 1, 1, 1).expand(n, 3, h, h)
    grid = sample_grid(rows, rows, rows, rows)
    top = first_rows(grid, 2)
    assert top.size == (grid.width, 2 * h + 3 * PAD)
    assert top.getpixel((PAD, PAD + h + PAD)) == grid.getpixel((PAD, PAD + h + PAD))  # row 2
    assert first_rows(grid, 9) is grid  # fewer rows than asked: unchanged


def test_display_grid_is_upscaled_with_exact_pixels_and_labelled():
    from ttsr.grids import DISPLAY_TILE, display_grid

    g = torch.Generator().manual_seed(0)
    parts = [torch.rand(3, 3, 8, 8, generator=g) * 2 - 1 for _ in range(4)]
    grid = sample_grid(*parts)
    shown = display_grid(grid, rows=2)
    scale = DISPLAY_TILE // 8
    band = shown.height - (2 * (8 + PAD) + PAD) * scale  # the header row above the tiles
    assert shown.width == grid.width * scale and band > 0
    # nearest-neighbour: every source pixel is a scale x scale block of the same colour
    body = shown.crop((0, band, shown.width, shown.height))
    first_rows_only = grid.crop((0, 0, grid.width, 2 * (8 + PAD) + PAD))
    assert body.resize(first_rows_only.size, Image.Resampling.NEAREST).tobytes() == (
        first_rows_only.tobytes()
    )
    # the header has dark text pixels above each of the four columns
    header = shown.crop((0, 0, shown.width, band)).convert("L")
    for col in range(4):
        x0 = (PAD + col * (8 + PAD)) * scale
        column = header.crop((x0, 0, x0 + 8 * scale, band))
        assert min(column.getdata()) < 100, col
