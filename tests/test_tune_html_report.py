"""The one-page HTML report: self-contained, escaped, images embedded."""

from __future__ import annotations

import base64
import io

import matplotlib
import pandas as pd

from tune.reporting.html_report import write_html

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
        answer="first line <b>\nsecond",
        notes=["random VGG & co"],
        description="what it asks",
        summary="== report ==\nanswer: first line <b>",
        overview=pd.DataFrame({"configuration": ["x=1"], "best_val_psnr": ["25.12 ± 0.01"]}),
        tables={"trials": pd.DataFrame({"label": ["a<b"], "best_val_psnr": [25.123456]})},
        plots=[plot],
        grids=[("a: epoch 2", grid)],
        config={"config.lr": 0.0001},
    )
    text = page.read_text()
    assert "<p>first line &lt;b&gt;</p><p>second</p>" in text
    assert "Note: random VGG &amp; co" in text and "a&lt;b" in text and "25.12" in text
    assert "config.lr" in text and "what it asks" in text
    images = [chunk.split("'")[0] for chunk in text.split("data:image/png;base64,")[1:]]
    assert len(images) == 2
    assert base64.b64decode(images[1]) == plot.read_bytes()  # grids first, then plots
    assert "a: epoch 2" in text
    assert text.count("random VGG &amp; co") == 1  # the note once
    assert "<h2>Configurations</h2>" in text and "25.12 ± 0.01" in text
    assert "<details><summary>trials</summary>" in text  # full tables folded
    assert "src='http" not in text and "<script" not in text  # nothing fetched from outside
    from PIL import Image

    assert Image.open(io.BytesIO(base64.b64decode(images[0]))).size == (100, 100)


def test_page_says_when_there_are_no_grids(tmp_path):
    page = write_html(
        tmp_path / "r.html", title="t", answer="a", notes=[], description="d", summary="s",
        overview=pd.DataFrame(), tables={}, plots=[], grids=[], config={},
    )  # fmt: skip
    assert "None: no MLflow store given" in page.read_text()


def test_backticks_become_code(tmp_path):
    page = write_html(
        tmp_path / "r.html", title="t", answer="run `python -m ttsr.vgg download`", notes=[],
        description="d", summary="s", overview=pd.DataFrame(), tables={}, plots=[], grids=[],
        config={},
    )  # fmt: skip
    text = page.read_text()
    assert "<code>python -m ttsr.vgg download</code>" in text and "`" not in text
