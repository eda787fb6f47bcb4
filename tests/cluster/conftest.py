"""Fixtures for the cluster tests: a real two-node Ray cluster and an MLflow tracking server on
127.0.0.1, and one finished study run through ``tune/run.py`` against them.

Everything is session-scoped and started once: the cluster (~40 s to start on 2 cores), the
server and the study are shared by test_multinode.py and test_browser.py. Teardown stops exactly
the processes started here, by PID, and fails the session if any survives.

Layout (one short directory under /tmp, removed at the end)::

    /tmp/rcXXXX/ray             Ray --temp-dir (unix sockets: path must stay < 108 bytes)
    /tmp/rcXXXX/logs            stdout+stderr of every started command
    /tmp/rcXXXX/mlflow          the server's sqlite store and artifact root
    /tmp/rcXXXX/shared_results  --storage of the study (both nodes write here: same machine)
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow_server import MlflowServer

from . import procs

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"  # screenshots and logs kept after the run (gitignored)
START_TIMEOUT = 120.0  # seconds for the cluster and the server to come up
STUDY_TIMEOUT = 240.0  # seconds for one tune/run.py invocation
WORKER_ATTEMPTS = 2  # `ray start` of the worker node, retried once when its raylet times out

# The tiny study: the real TTSR at 32 px with 4 features and one residual block per stage.
TINY_CONFIG = {
    "size": 32,
    "batch_size": 4,
    "n_feats": 4,
    "num_res_blocks": "1+1+1+1",
    "epochs": 2,
    "fraction": 0.1,
    "val_limit": 2,
    "num_samples_grid": 2,
    "sample_every": 1,
    "patience": None,
}
SPREAD_STUDY = "cluster-spread"  # two CPU trials at once: one lands on each node
GPU_STUDY = "cluster-gpu"  # one trial that asks for a GPU: only the worker node has one


def _ray_env() -> dict[str, str]:
    """Environment for the Ray nodes and the driver.

    - RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ("single machine" mode): Ray keeps 127.0.0.1 as the
      node and GCS address instead of rewriting it to the machine's outward IP, so the GCS, the
      raylets and the drivers bind and connect on loopback only.
    - RAY_AUTH_MODE=disabled: a token in ~/.ray/auth_token (left by any local ``ray.init``)
      would otherwise switch the cluster to token auth and lock the dashboard and state API.
    - PYTHONPATH: trial workers import ``tune`` and ``ttsr`` from this checkout.
    """
    return {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": str(REPO),
    }


# In single-machine mode `ray start --address` refuses to join a cluster, and otherwise it
# rewrites 127.0.0.1 in --address to the outward IP, where the GCS (bound to 127.0.0.1) does not
# listen. The worker node's `ray start` runs through this shim, which lifts the refusal and keeps
# the address as given; everything else is the stock `ray` CLI.
RAY_WORKER_CLI = """
import sys
import ray._private.ray_constants as constants
import ray._private.services as services
constants.ENABLE_RAY_CLUSTER = True
services.resolve_ip_for_localhost = lambda host: host
from ray.scripts.scripts import main
sys.exit(main())
"""


# Inherited variables that would redirect the nodes or the driver (removed for what we start;
# this process's environment is left alone).
UNSET = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "CUDA_VISIBLE_DEVICES", "RAY_TMPDIR")


@dataclass
class RayCluster:
    address: str  # GCS address HOST:PORT for ray.init / --address
    dashboard_url: str
    temp_dir: Path
    head_node_id: str
    gpu_node_id: str
    nodes: list[dict[str, Any]]  # the dashboard's node summaries at start


@dataclass
class Services:
    root: Path
    ray: RayCluster
    mlflow: MlflowServer
    started: list[procs.Started] = field(default_factory=list)


@dataclass
class StudyResult:
    name: str
    returncode: int
    output: str
    seconds: float
    storage: Path  # --storage given to run.py


# ------------------------------------------------------------------------------------------------
def _get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def _wait_port(port: int, *, timeout: float, proc: procs.Started) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{proc.name}: nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def alive_nodes(dashboard_url: str) -> list[dict[str, Any]]:
    """Alive nodes from the dashboard's node summary (the data its cluster page shows)."""
    summary = _get_json(f"{dashboard_url}/nodes?view=summary")["data"]["summary"]
    return [n for n in summary if n.get("raylet", {}).get("state") == "ALIVE"]


def _wait_nodes(url: str, count: int, *, timeout: float, watch: list[procs.Started]) -> list:
    deadline = time.monotonic() + timeout
    last: Any = "no answer"
    while time.monotonic() < deadline:
        for p in watch:
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited early:\n{p.log_tail()}")
        try:
            nodes = alive_nodes(url)
            if len(nodes) >= count:
                return nodes
            last = f"{len(nodes)} alive node(s)"
        except (OSError, ValueError, KeyError) as e:
            last = e
        time.sleep(1.0)
    raise TimeoutError(f"{url}: {count} nodes not alive after {timeout:.0f} s ({last})")


def _node_id(node: dict[str, Any]) -> str:
    return node["raylet"]["nodeId"]


def _stop_all(started: list[procs.Started], grace: float = 6.0) -> set[int]:
    """Stop every started command at once (SIGTERM, then SIGKILL after ``grace``)."""
    for p in started:
        p.pids()  # record the current tree before anything is reparented
    procs.signal_pids(set().union(*(p.seen for p in started)), signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not any(procs.alive(pid) for p in started for pid in p.seen | p.pids()):
            break
        time.sleep(0.2)
    left: set[int] = set()
    for p in started:
        left |= p.stop(grace=2.0)
    return left


WORKER_IP = "127.0.0.2"  # the second node's address: another loopback address on this machine


@dataclass
class TwoNodes:
    address: str  # GCS HOST:PORT
    head: procs.Started
    worker: procs.Started

    def worker_raylet(self) -> int:
        """The worker node's raylet: SIGKILL it and the node is lost."""
        for pid in self.worker.pids():
            if any(arg.endswith("/raylet") for arg in procs.cmdline(pid)[:1]):
                return pid
        raise AssertionError(f"no raylet among {self.worker.name}'s processes")


def start_two_nodes(root: Path, started: list[procs.Started]) -> TwoNodes:
    """A head (127.0.0.1) and a worker (``WORKER_IP``) node of 1 CPU each, logs in root/logs,
    Ray's temp dir root/ray; what it starts is appended to ``started`` (for ``_stop_all``) as it
    starts, so a failure half-way leaves nothing behind. For the reliability tests that lose a
    node: each builds its own cluster (the session one above is shared)."""
    logs, ray_tmp = root / "logs", root / "ray"
    for d in (logs, ray_tmp):
        d.mkdir(parents=True, exist_ok=True)
    gcs, dash, client = (procs.free_port() for _ in range(3))
    node_args = [f"--temp-dir={ray_tmp}", "--disable-usage-stats", "--block"]
    node_args += ["--object-store-memory=80000000", "--num-cpus=1", "--num-gpus=0"]
    ray_env = {**_ray_env(), "RAY_worker_niceness": "0"}
    head = procs.start(
        "ray-head",
        ["ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}"]
        + ["--include-dashboard=true", "--dashboard-host=127.0.0.1"]
        + [f"--dashboard-port={dash}", f"--ray-client-server-port={client}", *node_args],
        log_dir=logs,
        env=ray_env,
        unset=UNSET,
        cwd=root,
    )
    started.append(head)
    dashboard = f"http://127.0.0.1:{dash}"
    procs.wait_http(f"{dashboard}/api/gcs_healthz", timeout=START_TIMEOUT, proc=head)
    worker = procs.start(
        "ray-worker",
        [sys.executable, "-c", RAY_WORKER_CLI, "start", f"--address=127.0.0.1:{gcs}"]
        + [f"--node-ip-address={WORKER_IP}", *node_args],
        log_dir=logs,
        env=ray_env,
        unset=UNSET,
        cwd=root,
    )
    started.append(worker)
    _wait_nodes(dashboard, 2, timeout=START_TIMEOUT, watch=[head, worker])
    return TwoNodes(address=f"127.0.0.1:{gcs}", head=head, worker=worker)


@pytest.fixture(scope="session")
def services():
    """Ray head (1 CPU, dashboard) + Ray worker (1 CPU, 1 logical GPU) + MLflow server."""
    root = procs.short_tmpdir("rc")
    logs, ray_tmp = root / "logs", root / "ray"
    for d in (logs, ray_tmp, root / "shared_results"):
        d.mkdir(parents=True)
    gcs_port, dash_port, client_port = (procs.free_port() for _ in range(3))
    node_args = [
        f"--temp-dir={ray_tmp}",
        "--disable-usage-stats",
        "--object-store-memory=80000000",  # 80 MB: nothing big goes through the object store
        "--block",  # the `ray start` process stays the parent of its node's processes
    ]
    started: list[procs.Started] = []
    try:
        # Head on 127.0.0.1, worker on 127.0.0.2 (another loopback address): distinct node IPs
        # make Tune's per-trial node_ip tell the nodes apart.
        head = procs.start(
            "ray-head",
            ["ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs_port}"]
            + ["--num-cpus=1", "--num-gpus=0", "--include-dashboard=true"]
            + ["--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}"]
            + [f"--ray-client-server-port={client_port}"]
            + node_args,
            log_dir=logs,
            env=_ray_env(),
            unset=UNSET,
            cwd=root,
        )
        started.append(head)
        server = MlflowServer(root / "mlflow", log_dir=logs).start(wait=False)
        started.append(server.proc)
        dashboard = f"http://127.0.0.1:{dash_port}"
        # The worker joins once the head is fully up: a raylet must register with the GCS
        # within 30 s (fixed in Ray), which a GCS busy starting the dashboard can miss on 2 cores.
        procs.wait_http(f"{dashboard}/api/gcs_healthz", timeout=START_TIMEOUT, proc=head)
        worker_argv = (
            [sys.executable, "-c", RAY_WORKER_CLI, "start", f"--address=127.0.0.1:{gcs_port}"]
            + ["--node-ip-address=127.0.0.2", "--num-cpus=1", "--num-gpus=1"]
            + node_args
        )
        nodes: list[dict[str, Any]] = []
        for attempt in range(1, WORKER_ATTEMPTS + 1):
            worker = procs.start(
                f"ray-worker-{attempt}",
                worker_argv,
                log_dir=logs,
                env=_ray_env(),
                unset=UNSET,
                cwd=root,
            )
            started.append(worker)
            try:
                nodes = _wait_nodes(dashboard, 2, timeout=START_TIMEOUT, watch=[head, worker])
                break
            except RuntimeError:  # the worker's `ray start` gave up; stop its leftovers, retry
                if attempt == WORKER_ATTEMPTS or head.popen.poll() is not None:
                    raise
                assert not worker.stop(grace=3.0), f"{worker.name}: processes survived"
        server.wait()
        gpu = [n for n in nodes if n["raylet"].get("resourcesTotal", {}).get("GPU", 0) > 0]
        cpu_only = [n for n in nodes if n not in gpu]
        assert len(gpu) == 1 and len(cpu_only) == 1, f"expected one GPU node: {nodes}"
        cluster = RayCluster(
            address=f"127.0.0.1:{gcs_port}",
            dashboard_url=dashboard,
            temp_dir=ray_tmp,
            head_node_id=_node_id(cpu_only[0]),
            gpu_node_id=_node_id(gpu[0]),
            nodes=nodes,
        )
        yield Services(
            root=root,
            ray=cluster,
            mlflow=server,
            started=started,
        )
    finally:
        left = _stop_all(started)
        # Anything still naming our temp dir (e.g. a worker reparented to init) is ours too.
        stray = procs.pids_naming(str(root))
        procs.signal_pids(stray, signal.SIGKILL)  # fail below, but leave nothing running
        _keep_logs(root / "logs")
        if not left and not stray:
            shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes survived teardown: {sorted(left)}"
        assert not stray, f"processes naming {root} survived teardown: {sorted(stray)}"


def _keep_logs(logs: Path) -> None:
    """Copy the started commands' logs to test-artifacts/cluster-logs for post-mortems."""
    dest = ARTIFACTS / "cluster-logs"
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.log"):  # only this session's logs
        old.unlink()
    for f in logs.glob("*.log"):
        shutil.copy(f, dest / f.name)


@pytest.fixture(scope="session")
def ray_cluster(services) -> RayCluster:
    return services.ray


@pytest.fixture(scope="session")
def mlflow_server(services) -> MlflowServer:
    return services.mlflow


# ------------------------------------------------------------------------------------------------
def write_experiments(path: Path) -> Path:
    """Two tiny studies in the experiments.yaml schema (tune/study/studies.py)."""
    demo_common = {"cpus_per_trial": 1}
    studies = {
        SPREAD_STUDY: {
            "description": "two CPU trials at once on a two-node test cluster",
            "objectives": [{"metric": "val_psnr", "mode": "max"}],
            "scheduler": "fifo",
            "config": dict(TINY_CONFIG),
            "search": {"lr": {"grid": [1e-4, 2e-4]}},
            "profiles": {
                "seed": {"gpus_per_trial": 1},
                "demo": {**demo_common, "gpus_per_trial": 0, "max_concurrent": 2},
            },
        },
        GPU_STUDY: {
            "description": "one trial that asks for a GPU (a logical one: no CUDA here)",
            "objectives": [{"metric": "val_psnr", "mode": "max"}],
            "scheduler": "fifo",
            "config": dict(TINY_CONFIG),
            "profiles": {
                "seed": {"gpus_per_trial": 1},
                "demo": {**demo_common, "gpus_per_trial": 1, "max_concurrent": 1},
            },
        },
    }
    path.write_text(yaml.safe_dump({"studies": studies}, sort_keys=False))
    return path


def run_study(services: Services, experiments: Path, study: str, log_dir: Path) -> StudyResult:
    """``python tune/run.py`` against the test cluster and server; killed (by PID) on timeout."""
    storage = services.root / "shared_results"
    argv = [sys.executable, str(REPO / "tune" / "run.py"), "--study", study]
    argv += ["--experiments", str(experiments), "--profile", "demo"]
    argv += ["--address", services.ray.address, "--mlflow-uri", services.mlflow.uri]
    argv += ["--storage", str(storage), "--max-epochs", "2", "--no-report"]
    t0 = time.monotonic()
    driver = procs.start(
        f"run-{study}", argv, log_dir=log_dir, env=_ray_env(), unset=UNSET, cwd=services.root
    )
    try:
        returncode = driver.popen.wait(timeout=STUDY_TIMEOUT)
    except Exception:  # noqa: BLE001 - TimeoutExpired or an interrupt: stop the driver
        returncode = -1
    finally:
        left = driver.stop(grace=5.0)
    assert not left, f"{driver.name}: processes survived: {sorted(left)}"
    output = driver.log.read_text(errors="replace")
    return StudyResult(study, returncode, output, time.monotonic() - t0, storage)


@pytest.fixture(scope="session")
def experiments_file(services) -> Path:
    return write_experiments(services.root / "experiments.yaml")


@pytest.fixture(scope="session")
def spread_study(services, experiments_file) -> StudyResult:
    """The two-trial CPU study, run to the end (both trials at once: one per node)."""
    return run_study(services, experiments_file, SPREAD_STUDY, services.root / "logs")


@pytest.fixture(scope="session")
def gpu_study(services, experiments_file, spread_study) -> StudyResult:
    """The one-trial GPU study, run after the spread study (which needs both nodes' CPUs)."""
    return run_study(services, experiments_file, GPU_STUDY, services.root / "logs")
