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
