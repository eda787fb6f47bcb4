"""The report as one self-contained HTML page that reads top to bottom: the answer, the notes
(once), the study in a sentence, one table of what differs between the configurations, the
kept trial's sample grids (before training and at its kept epoch), the plots; the full tables,
the configuration and the printed summary folded away (the Parquet files hold every column).
No external files, scripts or fonts: MLflow's artifact viewer shows it as it is. Everything
fits a 1400-px window: wide tables scroll inside their own box, never the page.

The grids come from the kept trial's MLflow child run: `ttsr.tracking.MlflowTracker.log_image`
logs each epoch's test grid as the step-indexed image ``samples_test`` (artifacts
``images/samples_test+step+<epoch>+...png``, already upscaled and labelled LR↑ | Ref | SR | HR).
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ttsr.tracking import IMAGE_KEYS, no_download_progress

# MLflow's file name of a step-indexed image (its .png; a +compressed.webp sits beside it)
IMAGE = re.compile(r"images/(?P<key>[^+/]+)\+step\+(?P<step>\d+)\+[^/]*(?<!compressed)\.png")

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 1.5em auto; padding: 0 1em;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
.answer { background: #eef6ee; border-left: 4px solid #3a3; padding: .6em 1em; }
.note { background: #fff4e0; border-left: 4px solid #e90; padding: .4em 1em; margin: .4em 0; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
pre { background: #f8f8f8; padding: .6em; overflow-x: auto; font-size: .85em; }
figure { display: inline-block; margin: .5em; vertical-align: top; max-width: 100%; }
figure.plot { width: 48%; } figure.plot img { width: 100%; }
figcaption, .caption { font-size: .8em; color: #555; }
img { max-width: 100%; }
details { margin: .6em 0; } summary { cursor: pointer; font-weight: bold; }
code { background: #f2f2f2; padding: 0 .2em; }
"""


CAPTION = (
    "Each trial at its kept epoch, mean ± std over a configuration's seeds. PSNR Y: the luma "
    "PSNR of the paper and the reference code (no border crop); PSNR RGB-c4: MMagic's RGB PSNR "
    "with a 4-pixel border crop (docs/TRAINING.md). vs best: the difference from the best "
    "configuration against two standard errors of the seed spread."
)


def write_html(
    path: Path,
    *,
    title: str,
    answer: str,
    notes: Sequence[str],
    description: str,
    summary: str,
    overview: pd.DataFrame,
    tables: Mapping[str, pd.DataFrame],
    plots: Sequence[Path],
    grids: Sequence[tuple[str, Path]],
    config: Mapping[str, Any],
) -> Path:
    """Write the page. ``answer``: the study's answer (without the notes, which come once, from
    ``notes``); ``overview``: the configurations table shown open; ``tables``: the folded
    ones; ``summary``: the printed summary (kept as preformatted text, folded)."""
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<h2>Answer</h2><div class='answer'>{_paragraphs(answer)}</div>",
        *(f"<div class='note'>Note: {_inline(n)}</div>" for n in dict.fromkeys(notes)),
        f"<h2>The study</h2><p>{_inline(description)}</p>",
    ]
    if not overview.empty:
        parts += ["<h2>Configurations</h2>", _table(overview), f"<p class='caption'>{CAPTION}</p>"]
    parts.append("<h2>Sample grids of the kept model</h2>")
    if grids:
        parts += [_figure(p, caption) for caption, p in grids]
    else:
        parts.append("<p>None: no MLflow store given, or the kept trial logged no grid.</p>")
    if plots:
        parts.append("<h2>Plots</h2>")
        parts += [_figure(p, p.name) for p in plots]
    parts.append("<h2>Details</h2>")
    for name, table in tables.items():
        parts.append(f"<details><summary>{e(name)}</summary>{_table(table)}</details>")
    rows = "".join(f"<tr><td>{e(str(k))}</td><td>{e(str(v))}</td></tr>" for k, v in config.items())
    parts.append(
        "<details><summary>configuration</summary><div class='scroll'>"
        f"<table><tr><th>key</th><th>value</th></tr>{rows}</table></div></details>"
    )
    parts.append(f"<details><summary>printed summary</summary><pre>{e(summary)}</pre></details>")
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _inline(text: str) -> str:
    """Escaped text with `backticked` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _paragraphs(text: str) -> str:
    return "".join(f"<p>{_inline(line)}</p>" for line in text.split("\n") if line.strip())


def _table(table: pd.DataFrame) -> str:
    body = table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")
    return f"<div class='scroll'>{body}</div>"


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    alt = html.escape(caption)
    return (
        f"<figure class='plot'><img alt='{alt}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{alt}</figcaption></figure>"
    )


def logged_steps(tracking_uri: str, run_id: str, key: str = IMAGE_KEYS["test"]) -> dict[int, str]:
    """step -> artifact path of the images ``key`` the run logged ({} when none)."""
    from mlflow.tracking import MlflowClient

    paths = [a.path for a in MlflowClient(tracking_uri).list_artifacts(run_id, "images")]
    found = [m for p in paths if (m := IMAGE.fullmatch(p)) and m["key"] == key]
    return {int(m["step"]): m.string for m in found}


def kept_trial_grids(
    tracking_uri: str, run_id: str, *, label: str, kept_epoch: int | None, dest: Path
) -> list[tuple[str, Path]]:
    """(caption, PNG) of the run's first logged test grid and of its kept epoch's (the last one
    logged at or before it, when grids were not logged every epoch); [] when the run logged
    none or cannot be reached."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    try:
        steps = logged_steps(tracking_uri, run_id)
    except (MlflowException, OSError):
        return []
    if not steps:
        return []
    first = min(steps)
    upto = [s for s in steps if kept_epoch is None or s <= kept_epoch]
    kept = max(upto) if upto else max(steps)
    wanted = {first: "before training" if first == 0 else "first logged epoch"}
    wanted[kept] = "kept epoch" if kept == kept_epoch else "last logged epoch"
    out = []
    for step, what in sorted(wanted.items()):
        try:
            with no_download_progress():
                local = download_artifacts(
                    run_id=run_id, artifact_path=steps[step], dst_path=str(dest),
                    tracking_uri=tracking_uri,
                )  # fmt: skip
        except (MlflowException, OSError):
            continue
        out.append((f"{label}: epoch {step} ({what})", Path(local)))
    return out
