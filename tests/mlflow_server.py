"""A real ``mlflow server`` for tests: 127.0.0.1, a free port, SQLite store, served artifacts,
one worker, no job execution; started and stopped by PID (``cluster.procs``). The one helper for
every test that needs a server (the UI and browser tests, the outage tests, the test cluster).

    with MlflowServer(root) as server:      # server.uri = "http://127.0.0.1:PORT"
        server.kill(); server.start()       # an outage: the same port, store and artifacts
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from cluster import procs

START_TIMEOUT = 120.0  # seconds: the server imports slowly on a loaded 2-core machine
UNSET = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


class MlflowServer:
    def __init__(self, root: Path, *, log_dir: Path | None = None) -> None:
        self.root = Path(root)  # holds mlflow.db and artifacts/
        self.log_dir = Path(log_dir) if log_dir is not None else self.root / "logs"
        self.artifacts_dir = self.root / "artifacts"
        self.port = procs.free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: procs.Started | None = None
        self.starts = 0

    def start(self, *, wait: bool = True) -> MlflowServer:
        """Start (again) on the same port and store; returns once /health answers (``wait``),
        or at once (then ``wait()``: a caller that starts other things meanwhile)."""
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        argv = [sys.executable, "-m", "mlflow", "server"]
        argv += ["--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}"]
        argv += ["--artifacts-destination", str(self.artifacts_dir), "--serve-artifacts"]
        argv += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        self.proc = procs.start(
            f"mlflow-server-{self.starts}",
            argv,
            log_dir=self.log_dir,
            env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            unset=UNSET,
            cwd=self.root,
        )
        return self.wait() if wait else self

    def wait(self) -> MlflowServer:
        """Return once /health answers; stop the server and fail if it does not in time."""
        assert self.proc is not None
        try:
            procs.wait_http(f"{self.uri}/health", timeout=START_TIMEOUT, proc=self.proc)
        except BaseException:
            self.stop()
            raise
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

    def stop(self) -> None:
        """Stop the server's processes (by PID); fails if any survives."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        left = proc.stop(grace=8.0)
        assert not left, f"mlflow server processes survived: {sorted(left)}\n{proc.log_tail()}"

    def log_tail(self) -> str:
        return self.proc.log_tail() if self.proc is not None else ""

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def train_tiny_run(uri: str, out_dir: Path, *, experiment: str, epochs: int = 3) -> dict:
    """A tiny training run (the real loop, 32 px, 8 features) logged to ``uri``; returns the
    run id, the TrainResult and the callback."""
    import torch
    from tiny import tiny_config

    from ttsr.tracking import MlflowCallback, MlflowTracker
    from ttsr.train import train

    config = tiny_config(out_dir, epochs=epochs, out_dir=str(out_dir))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tracker = MlflowTracker(tracking_uri=uri, experiment=experiment, run_name="tiny")
        callback = MlflowCallback(tracker, system_metrics_interval=1.0)
        with tracker:
            result = train(config, callbacks=[callback], progress=False)
    finally:
        torch.set_num_threads(threads)
    return {"run_id": tracker.run_id, "result": result, "callback": callback, "tracker": tracker}


_TEMPLATE: list[Path] = []  # this process's migrated, empty SQLite store (made once)


def empty_store(db: Path) -> str:
    """Put an empty MLflow SQLite store, its tables already created, at ``db`` (unless a file
    is there); -> its URI.

    Creating the tables (MLflow's migrations) costs ~2.5 s of CPU per new store; a test whose
    subject is a study or a killed driver, not store creation, starts from a copy of one made
    once per test process. Fresh stores are still created by the tests of ``ttsr.train``'s
    tracking, the parent run, the servers and the README's main job."""
    import shutil
    import tempfile

    if not _TEMPLATE:
        from mlflow import MlflowClient

        path = Path(tempfile.mkdtemp(prefix="mlflow-template-")) / "mlflow.db"
        MlflowClient(f"sqlite:///{path}").search_experiments()  # creates the tables
        _TEMPLATE.append(path)
    if not db.exists():  # never over a store a test already wrote
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_TEMPLATE[0], db)
    return f"sqlite:///{db}"
