"""Where a study's results live: Tune's storage root, small JSON files in it, resume lookup.

Local paths are made absolute (Tune needs that); URIs such as ``s3://bucket/x`` go through
pyarrow, the filesystem layer Tune itself uses. Problems raise ``PreflightError`` naming the
flag, so ``tune/run.py`` can print one line and exit 2 before anything is written.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ttsr.atomic import write_bytes_atomically
from ttsr.errors import first_line
from tune.study.preflight import PreflightError

PARENT_FILE = "mlflow_parent.json"  # in each invocation's Tune experiment directory
MLFLOW_RUN_KEY = "mlflow_run_id"  # a trial's MLflow run id, in each of its result rows


def is_remote(path: str) -> bool:
    return "://" in path


def resolve_storage(storage: str) -> str:
    """Local paths become absolute (Tune needs that); URIs such as s3://bucket/x stay."""
    if is_remote(storage):
        return storage.rstrip("/")
    return str(Path(storage).expanduser().resolve())


def check_storage(storage: str, *, create: bool = True) -> None:
    """The storage path must be writable: a local dir we can create and write a file in, or a
    URI pyarrow can open (s3://, gs://). ``create=False`` (dry runs) only checks that the
    nearest existing directory is writable."""
    if is_remote(storage):
        try:
            import pyarrow.fs

            fs, path = pyarrow.fs.FileSystem.from_uri(storage)
            fs.create_dir(path, recursive=True)
        except Exception as e:  # noqa: BLE001 - any failure means "cannot use it"
            raise PreflightError(f"--storage {storage}: cannot open ({first_line(e)})") from None
        return
    path = Path(storage)
    if not create:
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise PreflightError(f"--storage {storage}: {existing} is not a writable directory")
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise PreflightError(f"--storage {storage}: not writable ({e.strerror})") from None


def read_json(uri: str) -> dict | None:
    """A small JSON file from local storage or a pyarrow URI; None when it does not exist."""
    if not is_remote(uri):
        p = Path(uri)
        return json.loads(p.read_text()) if p.exists() else None
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    if fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        return None
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())


def write_json(uri: str, value: dict) -> None:
    write_bytes(uri, json.dumps(value, indent=2, sort_keys=True).encode())


def write_bytes(uri: str, data: bytes) -> None:
    """Write a file into storage: atomically for a local path, in one upload for a URI."""
    if not is_remote(uri):
        write_bytes_atomically(uri, data)
        return
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)


def fetch_file(uri: str, local: str | Path) -> Path:
    """A file in storage as a local path: ``uri`` itself when local, else a downloaded copy."""
    if not is_remote(uri):
        return Path(uri)
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    local = Path(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    pyarrow.fs.copy_files(path, str(local), source_filesystem=fs)
    return local


def latest_invocation(study_root: str | Path) -> Path | None:
    """The study's invocation directory whose PARENT_FILE was written last, if any: not the
    directory's own mtime, which a report written into an older one (its report/) moves."""
    files = list(Path(study_root).glob(f"*/{PARENT_FILE}"))
    return max(files, key=lambda f: f.stat().st_mtime).parent if files else None


def find_resume_path(resume: str, study_root: str) -> str:
    """The experiment dir to resume: given (must lie inside this study's storage) or latest."""
    from ray import tune as ray_tune

    if resume == "latest":
        if is_remote(study_root):
            raise PreflightError("--resume: give the experiment path when --storage is remote")
        latest = latest_invocation(study_root)
        if latest is None:
            raise PreflightError(f"--resume: no earlier invocation under {study_root}")
        path = str(latest)
    else:
        path = resolve_storage(resume)
        if not path.startswith(study_root.rstrip("/") + "/"):
            raise PreflightError(f"--resume {resume}: not inside this study's storage {study_root}")
    if not ray_tune.Tuner.can_restore(path):
        raise PreflightError(f"--resume {path}: no Tune experiment state there")
    try:  # Tune's restore would log the failure and start the study over from nothing
        trial_states(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read it: the same start-over
        raise PreflightError(
            f"--resume {path}: Tune's experiment state there cannot be read ({first_line(exc)}; "
            "cut short by a full disk?), so Tune would start the study over as a new one; "
            "the trials' checkpoints and MLflow runs are kept: run the study without --resume"
        ) from exc
    return path


def read_parent_info(experiment_dir: str) -> dict:
    """The parent run recorded by the invocation that made ``experiment_dir``."""
    info = read_json(f"{experiment_dir}/{PARENT_FILE}")
    if info is None:
        raise PreflightError(
            f"--resume {experiment_dir}: no {PARENT_FILE} (not made by tune/run.py)"
        )
    return info


def trial_states(experiment_dir: str) -> dict[str, str]:
    """Tune trial id -> Tune status (TERMINATED, ERROR, PENDING, ...) from the saved state."""
    from ray.tune import ExperimentAnalysis

    return {t.trial_id: t.status for t in ExperimentAnalysis(experiment_dir).trials}
