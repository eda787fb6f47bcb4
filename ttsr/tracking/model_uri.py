"""From an MLflow model URI (``models:/...``, ``runs:/...``) to a local TTSR checkpoint file:
what `python -m ttsr.infer` imports (apart from `ttsr.tracking.mlflow_model`, which imports
ttsr.infer); mlflow is imported inside the functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ttsr.errors import UsageError, first_line

FLAVOR = "ttsr"
MODEL_NAME = "model"  # the LoggedModel's name within its run (runs:/<run id>/model)
URI_SCHEMES = ("models:/", "runs:/")


class ModelError(UsageError):
    """A model URI that cannot be resolved, or a run without a logged model (one line)."""


def run_model_id(client: Any, run_id: str, *, name: str = MODEL_NAME) -> str:
    """The id of the run's logged model ``name`` (the latest READY one, if it logged several)."""
    from mlflow.entities import LoggedModelStatus

    run = client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs is not None else []
    ready = []
    for output in outputs:
        model = client.get_logged_model(output.model_id)
        if model.status == LoggedModelStatus.READY and model.name == name:
            ready.append((model.creation_timestamp, output.step, model.model_id))
    if not ready:
        raise ModelError(f"run {run_id} has no logged model {name!r} (no best checkpoint logged)")
    return max(ready)[2]


# --- from a URI to a model ---------------------------------------------------------------------
def local_checkpoint(uri: str, dst: str | Path, *, tracking_uri: str | None = None) -> Path:
    """Download the model.pt of the model at ``uri`` into ``dst``; -> its local path.

    uri: ``models:/<name>/<version|latest|stage>``, ``models:/<name>@<alias>``,
    ``models:/<model id>``, ``runs:/<run id>/model``, or a ``.pt`` file's URI
    (``runs:/<run id>/.../model.pt``). Only MLmodel and model.pt travel, not the model's code.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    from ttsr.names import DEFAULT_TRACKING_URI

    tracking_uri = tracking_uri or DEFAULT_TRACKING_URI
    dst, uri = Path(dst), uri.rstrip("/")
    if uri.endswith(".pt"):
        return _download(uri, dst, tracking_uri, model_uri=uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        base = model_location(client, uri)
    except MlflowException as exc:
        raise ModelError(f"{uri}: not found at {tracking_uri} ({first_line(exc, 200)})") from None
    except ModelError as exc:
        raise ModelError(f"{uri}: {exc}") from None
    meta = _download(f"{base}/MLmodel", dst / "meta", tracking_uri, model_uri=uri)
    conf = Model.load(str(meta)).flavors
    if FLAVOR not in conf:
        raise ModelError(f"{uri}: not a TTSR model (its MLmodel has no {FLAVOR!r} flavour)")
    return _download(f"{base}/{conf[FLAVOR]['data']}", dst / "model", tracking_uri, model_uri=uri)


def model_location(client: Any, uri: str) -> str:
    """The artifact location of the model directory that ``uri`` names, resolved with the
    client's own URIs: MLflow itself resolves model ids (what registered versions and ``runs:/``
    URIs of logged models point to) with the global tracking URI."""
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    if uri.startswith("runs:/"):
        run_id, _, name = uri.removeprefix("runs:/").partition("/")
        model_id = run_model_id(client, run_id, name=name or MODEL_NAME)
    elif uri.startswith("models:/"):
        found = get_model_name_and_version(client, uri)  # (model id,) or (name, version)
        source = (
            f"models:/{found[0]}" if len(found) == 1 else client.get_model_version(*found).source
        )
        if not source.startswith("models:/"):
            return source
        model_id = source.removeprefix("models:/")
    else:
        raise ModelError("not a models:/ or runs:/ URI")
    return client.get_logged_model(model_id).artifact_location


def _download(uri: str, dst: Path, tracking_uri: str, *, model_uri: str) -> Path:
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=uri,
                dst_path=str(dst),
                tracking_uri=tracking_uri,
                registry_uri=tracking_uri,
            )
        )
    except MlflowException as exc:
        raise ModelError(
            f"{model_uri}: not found at {tracking_uri} ({first_line(exc, 200)})"
        ) from None
