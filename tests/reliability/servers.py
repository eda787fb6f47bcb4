"""moto's S3-compatible server for the S3 tests, started on 127.0.0.1 and stopped by PID
(`cluster.procs`). The MLflow server the outage tests kill is tests/mlflow_server.py's.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from cluster import procs

START_TIMEOUT = 120.0  # a server's start on a loaded 2-core machine


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
