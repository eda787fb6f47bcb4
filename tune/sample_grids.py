"""The latest validation sample grid of a few trials, fetched from their MLflow child runs.

The training loop writes ``samples/epoch_XXX_test.png`` (rows of LR-up | Ref | SR | HR) and the
MLflow callback logs it to the trial's run; the report embeds the latest one of the best few
trials, shrunk, in its HTML page.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

GRID = re.compile(r"samples/epoch_(\d+)_test\.png")
MAX_GRIDS = 4  # trials whose grid the page shows
MAX_SIDE = 512  # px: the longest side of an embedded grid


def latest_test_grids(
    tracking_uri: str,
    runs: Sequence[tuple[str, str]],
    dest: Path,
    *,
    limit: int = MAX_GRIDS,
    max_side: int = MAX_SIDE,
) -> list[tuple[str, Path]]:
    """(caption, PNG path) for the first ``limit`` runs of ``runs`` ((label, run id), best
    first) that logged a test grid; a run without one, or unreachable, is skipped."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from PIL import Image

    client = MlflowClient(tracking_uri)
    dest.mkdir(parents=True, exist_ok=True)
    found: list[tuple[str, Path]] = []
    for label, run_id in runs:
        if len(found) >= limit:
            break
        try:
            paths = [a.path for a in client.list_artifacts(run_id, "samples")]
            grids = [(int(m.group(1)), p) for p in paths if (m := GRID.fullmatch(p))]
            if not grids:
                continue
            epoch, latest = max(grids)
            with tempfile.TemporaryDirectory() as tmp, _no_progress_bar():
                local = download_artifacts(
                    run_id=run_id, artifact_path=latest, dst_path=tmp, tracking_uri=tracking_uri
                )
                with Image.open(local) as image:
                    image.thumbnail((max_side, max_side))
                    out = dest / f"grid_{len(found)}.png"
                    image.save(out, optimize=True)
        except (MlflowException, OSError):
            continue
        found.append((f"{label}: epoch {epoch} (LR up | Ref | SR | HR)", out))
    return found


@contextlib.contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow draws a progress bar per download; a report's console has no use for it."""
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR as flag

    before = os.environ.get(flag.name)
    os.environ[flag.name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(flag.name, None)
        else:
            os.environ[flag.name] = before
