"""The one-page HTML report: self-contained, escaped, images embedded."""

from __future__ import annotations

import base64
import io

import matplotlib
import pandas as pd

from tune.html_report import write_html

matplotlib.use("Agg")


def _png(path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    fig.savefig(path)
    plt.close(fig)
    return path


def test_page_embeds_everything_and_escapes_text(tmp_path):
    plot, grid = _png(tmp_path / "curves.png"), _png(tmp_path / "grid.png")
    page = write_html(
        tmp_path / "out" / "report.html",
        title="s (demo profile)",
        answer="first line <b>\nNote: random VGG",
        notes=["random VGG & co"],
        description="what it asks",
        summary="== report ==\nanswer: first line <b>",
        tables={"trials": pd.DataFrame({"label": ["a<b"], "best_val_psnr": [25.123456]})},
        plots=[plot],
        grids=[("a: epoch 2", grid)],
        config={"config.lr": 0.0001},
    )
    text = page.read_text()
    assert "<p>first line &lt;b&gt;</p><p>Note: random VGG</p>" in text
    assert "Note: random VGG &amp; co" in text and "a&lt;b" in text and "25.12" in text
    assert "config.lr" in text and "what it asks" in text
    images = [chunk.split("'")[0] for chunk in text.split("data:image/png;base64,")[1:]]
    assert len(images) == 2
    assert base64.b64decode(images[0]) == plot.read_bytes()
    assert "a: epoch 2" in text
    assert "src='http" not in text and "<script" not in text  # nothing fetched from outside
    from PIL import Image

    assert Image.open(io.BytesIO(base64.b64decode(images[1]))).size == (100, 100)


def test_page_says_when_there_are_no_grids(tmp_path):
    page = write_html(
        tmp_path / "r.html", title="t", answer="a", notes=[], description="d", summary="s",
        tables={}, plots=[], grids=[], config={},
    )  # fmt: skip
    assert "None: no MLflow store given" in page.read_text()
