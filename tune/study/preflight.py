"""Checks that run before anything starts: MLflow store, Ray address, resources (storage:
``tune/execution/storage.py``). Each raises ``PreflightError``, one line naming the flag.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from ttsr.errors import UsageError


class PreflightError(UsageError, RuntimeError):
    """A flag or environment value cannot work; the message names it."""


# ------------------------------------------------------------------------------------------------
def check_mlflow_uri(uri: str, *, timeout: float = 3.0) -> None:
    """Probe the tracking store without creating anything: http(s) answers /health (or the
    REST API), sqlite's directory is writable, a file store's directory is writable."""
    parsed = urlparse(uri)
    scheme = parsed.scheme
    if scheme in ("http", "https"):
        base = uri.rstrip("/")
        for probe in ("/health", "/api/2.0/mlflow/experiments/search?max_results=1"):
            try:
                with urllib.request.urlopen(base + probe, timeout=timeout) as r:
                    if r.status < 400:
                        return
            except urllib.error.HTTPError as e:
                if e.code < 500 and probe.startswith("/api"):
                    raise PreflightError(
                        f"--mlflow-uri {uri}: HTTP {e.code} from the MLflow REST API "
                        "(is this an MLflow tracking server?)"
                    ) from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise PreflightError(f"--mlflow-uri {uri}: unreachable ({reason})") from None
        raise PreflightError(f"--mlflow-uri {uri}: no MLflow tracking server answers there")
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///"):
            raise PreflightError(f"--mlflow-uri {uri}: use sqlite:///ABSOLUTE/PATH/mlflow.db")
        db = Path.cwd() / uri.removeprefix("sqlite:///")  # an absolute path replaces the cwd
        _check_dir_writable(db.parent, f"--mlflow-uri {uri}")
        return
    if scheme in ("", "file"):
        path = Path(parsed.path if scheme == "file" else uri)
        _check_dir_writable(path if path.exists() else path.parent, f"--mlflow-uri {uri}")
        return
    if scheme == "databricks":
        return
    raise PreflightError(
        f"--mlflow-uri {uri}: unknown scheme {scheme!r}; use http(s)://HOST:PORT or "
        "sqlite:///PATH/mlflow.db"
    )


def _check_dir_writable(path: Path, what: str) -> None:
    if not path.is_dir():
        raise PreflightError(f"{what}: directory {path} does not exist")
    if not os.access(path, os.W_OK | os.X_OK):
        raise PreflightError(f"{what}: directory {path} is not writable")


def mlflow_ui_command(uri: str) -> str:
    """How to look at this store."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser (the tracking server's UI)"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"


# ------------------------------------------------------------------------------------------------
def check_ray_address(address: str, *, timeout: float = 3.0) -> None:
    """A TCP connect to the GCS (host:port) or Ray Client (ray://host:port) endpoint, so a wrong
    address fails in seconds instead of ray.init retrying for a minute."""
    if address in ("auto", "local"):
        return
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        default = 10001 if address.startswith("ray://") else 6379
        host, port = target, str(default)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except OSError as e:
        raise PreflightError(
            f"--address {address}: Ray is not reachable at {host}:{port} ({e.strerror or e})"
        ) from None


def check_resources(
    nodes: list[dict], *, gpus_per_trial: float, cpus_per_trial: float, source: str
) -> None:
    """A trial that no node can hold would pend forever; say so instead. ``nodes``: ray.nodes()
    entries (alive ones are used)."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    max_gpu = max((r.get("GPU", 0.0) for r in alive), default=0.0)
    max_cpu = max((r.get("CPU", 0.0) for r in alive), default=0.0)
    if gpus_per_trial > max_gpu:
        have = f"the largest node has {max_gpu:g} GPU(s)" if max_gpu else "the cluster has no GPU"
        raise PreflightError(
            f"--gpus-per-trial {gpus_per_trial:g} ({source}): {have}, so the trial would pend "
            "forever; lower it (fractions such as 0.5 share a GPU) or use --profile demo"
        )
    if cpus_per_trial > max_cpu:
        raise PreflightError(
            f"--cpus-per-trial {cpus_per_trial:g} ({source}): the largest node has "
            f"{max_cpu:g} CPU(s), so the trial would pend forever"
        )
