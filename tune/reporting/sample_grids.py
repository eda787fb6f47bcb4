"""The kept trial's validation sample grids, fetched from its MLflow child run.

`ttsr.tracking.MlflowTracker.log_image` logs each epoch's test grid as the step-indexed image
``samples_test`` (artifacts ``images/samples_test+step+<epoch>+...png``, already upscaled and
labelled LR↑ | Ref | SR | HR); the report shows the one before training and the one of the
kept epoch side by side, so a reader sees what the training changed.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from ttsr.tracking import IMAGE_KEYS, no_download_progress

TEST_KEY = IMAGE_KEYS["test"]
# MLflow's file name of a step-indexed image (its .png; a +compressed.webp sits beside it)
IMAGE = re.compile(r"images/(?P<key>[^+/]+)\+step\+(?P<step>\d+)\+[^/]*(?<!compressed)\.png")


def logged_steps(tracking_uri: str, run_id: str, key: str = TEST_KEY) -> dict[int, str]:
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
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for step, what in sorted(wanted.items()):
        try:
            with tempfile.TemporaryDirectory() as tmp, no_download_progress():
                local = download_artifacts(
                    run_id=run_id, artifact_path=steps[step], dst_path=tmp,
                    tracking_uri=tracking_uri,
                )  # fmt: skip
                path = dest / f"grid_step_{step}.png"
                shutil.copyfile(local, path)
        except (MlflowException, OSError):
            continue
        out.append((f"{label}: epoch {step} ({what})", path))
    return out
