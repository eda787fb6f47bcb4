"""The report as one self-contained HTML page: the answer and notes first, then the study,
the tables, the plots and sample grids (embedded as base64 PNG), and the configuration.
No external files, scripts or fonts: MLflow's artifact viewer shows it as it is."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

STYLE = """
body { font-family: sans-serif; max-width: 1200px; margin: 1.5em auto; padding: 0 1em;
       color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
.answer { background: #eef6ee; border-left: 4px solid #3a3; padding: .6em 1em; }
.note { background: #fff4e0; border-left: 4px solid #e90; padding: .4em 1em; margin: .4em 0; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
pre { background: #f8f8f8; padding: .6em; overflow-x: auto; font-size: .85em; }
figure { display: inline-block; margin: .5em; vertical-align: top; }
figcaption { font-size: .8em; color: #555; }
img { max-width: 100%; }
"""


def write_html(
    path: Path,
    *,
    title: str,
    answer: str,
    notes: Sequence[str],
    description: str,
    summary: str,
    tables: Mapping[str, pd.DataFrame],
    plots: Sequence[Path],
    grids: Sequence[tuple[str, Path]],
    config: Mapping[str, Any],
) -> Path:
    """Write the page; ``summary`` is the printed summary (kept as preformatted text)."""
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<h2>Answer</h2><div class='answer'>{_paragraphs(answer)}</div>",
        *(f"<div class='note'>Note: {e(n)}</div>" for n in notes),
        f"<h2>Study</h2><p>{e(description)}</p>",
    ]
    for name, table in tables.items():
        parts.append(f"<h2>{e(name)}</h2>")
        parts.append(table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}"))
    if plots:
        parts.append("<h2>Plots</h2>")
        parts += [_figure(p, p.name) for p in plots]
    parts.append("<h2>Sample grids (latest validation epoch)</h2>")
    if grids:
        parts += [_figure(p, caption) for caption, p in grids]
    else:
        parts.append("<p>None: no MLflow store given, or no trial logged a sample grid.</p>")
    parts.append("<h2>Configuration</h2>")
    rows = "".join(f"<tr><td>{e(str(k))}</td><td>{e(str(v))}</td></tr>" for k, v in config.items())
    parts.append(f"<table><tr><th>key</th><th>value</th></tr>{rows}</table>")
    parts.append(f"<h2>Printed summary</h2><pre>{e(summary)}</pre></body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _paragraphs(text: str) -> str:
    lines = (html.escape(line) for line in text.split("\n") if line.strip())
    return "".join(f"<p>{line}</p>" for line in lines)


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    alt = html.escape(caption)
    return (
        f"<figure><img alt='{alt}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{alt}</figcaption></figure>"
    )
