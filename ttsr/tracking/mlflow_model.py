"""TTSR as an MLflow model: log a run's best checkpoint, register a study's best, load by URI.

A logged model's directory (MLflow's model layout)::

    MLmodel            flavours ``ttsr`` (loads into a `ttsr.model.TTSR`) and ``python_function``
    data/model.pt      the checkpoint file ttsr.train writes (reference-layout weights plus the
                       architecture, "ttsr-tune/1"): what ``ttsr.infer --checkpoint`` reads
    code/ttsr/         the sources the pyfunc loader imports, so it loads where ttsr is not
                       installed
    requirements.txt   explicit pins of what is installed here (no environment inference)

Ways in: ``load_model(uri)`` -> a `TTSR` in eval mode (the ``ttsr`` flavour);
``mlflow.pyfunc.load_model(uri).predict({"lr": LR, "ref": REF})`` -> SR, uint8 (H, W, 3) arrays
in and out, exactly what ``python -m ttsr.infer`` computes; ``python -m ttsr.infer --checkpoint
models:/ttsr-<study>/latest`` (or ``runs:/<id>/model``, ``models:/<model id>``, through
`local_checkpoint`). Nothing here touches the network beyond the tracking server.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from ttsr.tracking.model_uri import (  # noqa: F401 - re-exported: the MLflow model's public API
    FLAVOR,
    MODEL_NAME,
    ModelError,
    local_checkpoint,
    run_model_id,
)

DATA_FILE = "model.pt"
REGISTERED_PREFIX = "ttsr-"
REQUIREMENTS = ("torch", "numpy", "pillow", "pydantic")
# What the pyfunc loader imports (this module, ttsr.checkpoint, ttsr.model, ttsr.infer and
# theirs): the model's code/ttsr/. Few files, as each is one upload to a tracking server
# (tests/test_mlflow_model.py loads the pyfunc from these alone).
CODE_FILES = (
    "__init__.py",
    "atomic.py",
    "checkpoint.py",
    "cli_errors.py",
    "config.py",
    "errors.py",
    "fused_search.py",
    "infer.py",
    "model.py",
    "names.py",
    "search.py",
    "tracking/__init__.py",
    "tracking/mlflow_model.py",
    "tracking/model_uri.py",
    "upsample.py",
    "vgg/__init__.py",
)


def registered_name(study: str) -> str:
    return f"{REGISTERED_PREFIX}{study}"


def pip_requirements() -> list[str]:
    """Pins of what runs the model here (local version parts such as +cu130 dropped)."""
    out = []
    for name in ("mlflow", *REQUIREMENTS):
        try:
            out.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def signature() -> Any:
    """LR and reference images in, the SR image out: uint8 (H, W, 3) arrays."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    image = np.dtype(np.uint8)
    return ModelSignature(
        inputs=Schema(
            [TensorSpec(image, (-1, -1, 3), "lr"), TensorSpec(image, (-1, -1, 3), "ref")]
        ),
        outputs=Schema([TensorSpec(image, (-1, -1, 3))]),
    )


def save_model(checkpoint: str | Path, path: str | Path, *, mlflow_model: Any = None) -> Path:
    """Write the MLflow model directory ``path`` for ``checkpoint`` (a model.pt file).

    Written here rather than by ``mlflow.pyfunc.save_model``, which checks the requirements
    against every installed distribution (~5 s per process on the CPU demo machine); the files
    and the MLmodel are the ones it writes.
    """
    import mlflow.pyfunc
    from mlflow.models import Model
    from mlflow.utils.environment import _mlflow_conda_env, _PythonEnv

    from ttsr.checkpoint import checkpoint_model_config

    checkpoint, path = Path(checkpoint), Path(path)
    config = checkpoint_model_config(checkpoint)  # a bad file fails here, not at load time
    path.mkdir(parents=True, exist_ok=False)
    (path / "data").mkdir()
    shutil.copyfile(checkpoint, path / "data" / DATA_FILE)
    package = Path(__file__).resolve().parents[1]  # ttsr/
    for name in CODE_FILES:
        (path / "code" / "ttsr" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package / name, path / "code" / "ttsr" / name)
    requirements = pip_requirements()
    (path / "requirements.txt").write_text("\n".join(requirements) + "\n")
    _PythonEnv.current().to_yaml(path / "python_env.yaml")
    _mlflow_conda_env(path / "conda.yaml", additional_pip_deps=requirements)
    model = mlflow_model if mlflow_model is not None else Model()
    model.signature = signature()
    model.add_flavor(
        FLAVOR,
        data=f"data/{DATA_FILE}",
        n_feats=config.n_feats,
        num_res_blocks=list(config.num_res_blocks),
        res_scale=config.res_scale,
    )
    mlflow.pyfunc.add_to_model(
        model,
        loader_module="ttsr.tracking.mlflow_model",
        data=f"data/{DATA_FILE}",
        code="code",
        conda_env="conda.yaml",
        python_env="python_env.yaml",
    )
    model.model_size_bytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    model.save(str(path / "MLmodel"))
    return path


def log_model(
    client: Any,
    run_id: str,
    checkpoint: str | Path,
    *,
    step: int,
    tags: dict[str, Any] | None = None,
) -> str:
    """Log ``checkpoint`` as the run's LoggedModel ``model`` at ``step``; returns its model id."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    run = client.get_run(run_id)
    logged = client.create_logged_model(
        run.info.experiment_id,
        name=MODEL_NAME,
        source_run_id=run_id,
        tags={k: str(v) for k, v in (tags or {}).items()},
        model_type="ttsr",
    )
    try:
        mlflow_model = Model(
            artifact_path=logged.artifact_location,
            run_id=run_id,
            model_uuid=logged.model_id,
            model_id=logged.model_id,
        )
        with tempfile.TemporaryDirectory() as tmp:
            local = save_model(checkpoint, Path(tmp) / "model", mlflow_model=mlflow_model)
            client.log_model_artifacts(logged.model_id, str(local))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=step)])
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    except BaseException:
        try:
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        except Exception:  # noqa: BLE001, S110 - the original error is the one to report
            pass
        raise
    return logged.model_id


def has_model(client: Any, run_id: str) -> bool:
    try:
        run_model_id(client, run_id)
    except ModelError:
        return False
    return True


def log_missing_models(tracking_uri: str, checkpoints: Mapping[str, str | Path]) -> dict[str, str]:
    """Log the best checkpoint (``checkpoints``: run id -> a checkpoint folder or model.pt in
    Tune's storage) of each run without a READY model; -> {run id: model id} of those logged.
    For the driver, after a study: a trial that Tune stops (ASHA, a stopper) is ended within
    moments of its last report, often before its own run could log its model."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    logged = {}
    for run_id, checkpoint in checkpoints.items():
        if not has_model(client, run_id):
            logged[run_id] = log_checkpoint(client, run_id, checkpoint)
    return logged


def log_checkpoint(client: Any, run_id: str, checkpoint: str | Path) -> str:
    """`log_model` for a checkpoint folder or model.pt file, at the epoch it records."""
    from ttsr.checkpoint import MODEL_FILE, load_checkpoint, resolve_checkpoint_dir

    path = Path(checkpoint)
    if path.is_dir():
        path = resolve_checkpoint_dir(path) / MODEL_FILE
    saved = load_checkpoint(path)
    epoch = int(saved.get("epoch", 0))
    return log_model(
        client, run_id, path, step=epoch, tags={"epoch": epoch, "val_psnr": saved.get("val_psnr")}
    )


BEST_ALIAS = "best"  # models:/ttsr-<study>@best: the latest study's kept model


def register_best_model(
    tracking_uri: str,
    study_name: str,
    run_id: str,
    *,
    checkpoint: str | Path | None = None,
    description: str | None = None,
) -> int:
    """Register the logged model of ``run_id`` (the study's kept trial; its ``checkpoint`` is
    logged first if it has none, else that is a `ModelError`) as a new version of
    ``ttsr-<study_name>`` with alias ``best`` and ``description`` (the study's answer); -> the
    version number. Linked both ways: the version names the logged model, and the logged model
    lists the version (its ``mlflow.modelVersions`` tag, as ``mlflow.register_model`` writes)."""
    import json

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if checkpoint is not None and not has_model(client, run_id):
        log_checkpoint(client, run_id, checkpoint)
    model_id = run_model_id(client, run_id)
    name = registered_name(study_name)
    try:
        client.create_registered_model(
            name, tags={"study": study_name}, description=f"Best TTSR of study {study_name}"
        )
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    # The source is models:/<model id> (what mlflow.register_model writes): the UI's version
    # page links it to the logged model. A SQL registry store resolves that id with the global
    # tracking URI, not this client's: point it at this store for the call.
    with _use_tracking_uri(tracking_uri):
        version = client.create_model_version(
            name,
            source=f"models:/{model_id}",
            run_id=run_id,
            model_id=model_id,
            tags={"study": study_name},
            description=description,
        )
    listed = client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS)
    links = [*json.loads(listed or "[]"), {"name": name, "version": version.version}]
    client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(links)})
    client.set_registered_model_alias(name, BEST_ALIAS, version.version)
    return int(version.version)


def load_model(
    uri: str, *, tracking_uri: str | None = None, device: str = "cpu", **kwargs: Any
) -> Any:
    """The ``ttsr`` flavour: the model at ``uri`` as a `ttsr.model.TTSR` (eval mode).
    kwargs go to `ttsr.checkpoint.load_model` (search_chunk, search_dtype)."""
    from ttsr.checkpoint import load_model as load_checkpoint_model

    with tempfile.TemporaryDirectory() as tmp:
        path = local_checkpoint(uri, tmp, tracking_uri=tracking_uri)
        return load_checkpoint_model(path, device=device, **kwargs)


# --- python_function flavour -------------------------------------------------------------------
class TTSRPredictor:
    """What ``mlflow.pyfunc.load_model`` wraps: LR + reference image -> SR image."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        import torch

        from ttsr.checkpoint import load_model as load_checkpoint_model

        self.device = torch.device(device)
        self.model = load_checkpoint_model(path, device=self.device)

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        """model_input: {"lr": (h, w, 3) uint8, "ref": (H, W, 3) uint8} -> (4h, 4w, 3) uint8."""
        import numpy as np

        from ttsr.infer import super_resolve

        try:
            lr, ref = model_input["lr"], model_input["ref"]
        except (KeyError, TypeError, IndexError):
            raise ModelError(
                "predict takes {'lr': image, 'ref': image} (uint8 H x W x 3)"
            ) from None
        lr, ref = np.asarray(lr, dtype=np.uint8), np.asarray(ref, dtype=np.uint8)
        return super_resolve(self.model, lr, ref, device=self.device)


_load_pyfunc = TTSRPredictor  # MLflow's pyfunc loader hook: _load_pyfunc(data_path)
