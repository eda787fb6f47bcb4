"""Real servers for the outage tests, started on 127.0.0.1 and stopped by PID
(`cluster.procs`): an MLflow tracking server (SQLite store, served artifacts) that a test can
kill and start again on the same port, and moto's S3-compatible server.
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from cluster import procs

START_TIMEOUT = 120.0  # a server's start on a loaded 2-core machine


@dataclass
class MlflowServer:
    root: Path  # holds mlflow.db, artifacts/ and the logs
    port: int
    proc: procs.Started | None = None
    starts: int = 0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MlflowServer:
        """Start (again) on the same port and store; returns once /health answers."""
        self.starts += 1
        (self.root / "artifacts").mkdir(parents=True, exist_ok=True)
        self.proc = procs.start(
            f"mlflow-{self.starts}",
            [sys.executable, "-m", "mlflow", "server"]
            + ["--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}"]
            + ["--artifacts-destination", str(self.root / "artifacts"), "--serve-artifacts"]
            + ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            log_dir=self.root,
            env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            unset=("MLFLOW_TRACKING_URI",),
            cwd=self.root,
        )
        procs.wait_http(f"{self.uri}/health", timeout=START_TIMEOUT, proc=self.proc)
        return self

    def kill(self) -> None:
        """SIGKILL the server and every process it started: a crash, not a shutdown."""
        assert self.proc is not None
        pids = self.proc.pids()
        procs.signal_pids(pids, signal.SIGKILL)
        procs.wait_until(
            lambda: not any(procs.alive(p) for p in pids), timeout=30, what="mlflow server gone"
        )
        self.proc.popen.wait(timeout=10)

    def stop(self) -> set[int]:
        return self.proc.stop() if self.proc is not None else set()


def start_mlflow(root: Path) -> MlflowServer:
    return MlflowServer(root=root, port=procs.free_port()).start()


S3_ENV = {
    # fake credentials: moto accepts any; region fixed so nothing asks a metadata service
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class S3Server:
    proc: procs.Started
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """What a process needs to use this server for s3:// URIs (pyarrow reads
        AWS_ENDPOINT_URL)."""
        return {**S3_ENV, "AWS_ENDPOINT_URL": self.endpoint, "AWS_ENDPOINT_URL_S3": self.endpoint}

    def stop(self) -> set[int]:
        return self.proc.stop()


def start_moto(log_dir: Path) -> S3Server:
    """moto's server mode (``moto[server]``), in memory, on a free port."""
    port = procs.free_port()
    proc = procs.start(
        "moto",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        log_dir=log_dir,
        env=S3_ENV,
    )
    procs.wait_http(f"http://127.0.0.1:{port}/moto-api/", timeout=START_TIMEOUT, proc=proc)
    return S3Server(proc=proc, port=port)
