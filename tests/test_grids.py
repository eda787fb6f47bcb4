import torch
from PIL import Image

from ttsr.grids import PAD, save_sample_grid


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
