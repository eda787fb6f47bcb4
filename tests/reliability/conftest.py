"""Shared helpers for the reliability suite: tiny configs, CLI runners, file-tree snapshots,
MLflow run queries and a short Ray temp dir.

The Ray and MLflow processes are real; every test starts its own (local Ray, SQLite store)
except test_node_loss.py, which builds a two-node cluster from the tests/cluster helpers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import tiny
import yaml
from clis import call_main
from cluster.procs import (  # noqa: F401 - descendants, listening_sockets: for the fault tests
    descendants,
    free_port,
    listening_sockets,
    pids_naming,
    signal_pids,
)
from mlflow_server import empty_store

REPO = Path(__file__).resolve().parents[2]
RUN = [sys.executable, str(REPO / "tune" / "run.py")]
TRAIN = [sys.executable, "-m", "ttsr.train"]
INFER = [sys.executable, "-m", "ttsr.infer"]
DATA = [sys.executable, "-m", "ttsr.data"]

# tests/tiny.py's config with 4 features, 4-item batches and 2 validation images: ~1 s epochs
# on a core, in a study's trials.
TINY = {
    **tiny.TINY,
    "batch_size": 4,
    "fraction": 0.1,
    "val_limit": 2,
    "epochs": 3,
    "n_feats": 4,
    "sample_every": 0,
    # a 4-feature model gains hundredths of a dB: any gain is a new best here, as the tests of
    # kept epochs count on (the default 0.05-dB min_delta is for real runs' plateaus)
    "min_delta": 0.0,
}
TINY_FLAGS = ["--size", "32", "--batch-size", "4", "--fraction", "0.1", "--val-limit", "2"]
TINY_FLAGS += ["--n-feats", "4", "--num-res-blocks", "1+1+1+1", "--device", "cpu"]
TINY_FLAGS += ["--sample-every", "0", "--no-progress"]
# as TINY's patience None (the CLI takes a number): a 4-feature model barely improves, and the
# 0.05-dB min_delta would stop it before the epochs a test counts on
TINY_FLAGS += ["--patience", "1000"]


def env(**extra: str) -> dict[str, str]:
    """The caller's environment without variables that would redirect Ray or MLflow."""
    out = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), out.get("PYTHONPATH", "")) if p)
    # No CUDA; Ray at normal niceness (workers at nice 15 starve on a busy CI machine); Tune
    # saves its experiment state every second so a killed driver loses little.
    out.update(CUDA_VISIBLE_DEVICES="", RAY_worker_niceness="0", TUNE_GLOBAL_CHECKPOINT_S="1")
    out.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    out.update(extra)
    return out


def run(argv: list[str], cwd: Path, timeout: float = 240, **extra_env: str):
    return subprocess.run(
        argv, cwd=cwd, env=env(**extra_env), capture_output=True, text=True, timeout=timeout
    )


# The CLIs by the argv prefix that runs them, and the module whose ``main(argv)`` they run.
CLI_MAINS = {
    tuple(RUN): "tune.run",
    tuple(TRAIN): "ttsr.train.cli",
    tuple(INFER): "ttsr.infer",
    tuple(DATA): "ttsr.data.__main__",
}


@pytest.fixture
def in_process(monkeypatch, capfd):
    """``in_process(argv, cwd)``: what ``run(argv, cwd)`` does, through the CLI's ``main`` in
    this process (the environment ``env()`` gives a subprocess, restored after; output captured
    at the file descriptors, so a stray log line still counts). For tables of bad input, where
    a process per case would prove nothing more: each CLI's own process, exit code and one-line
    error are tested beside them (test_cli_errors.py, tests/test_tune_run.py)."""
    import importlib

    saved = dict(os.environ)

    def call(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
        prefix = next(p for p in CLI_MAINS if tuple(argv[: len(p)]) == p)
        main = importlib.import_module(CLI_MAINS[prefix]).main
        monkeypatch.chdir(cwd)
        os.environ.clear()
        os.environ.update(env())
        try:
            done = call_main(main, argv[len(prefix) :], capfd)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return subprocess.CompletedProcess(argv, done.returncode, done.stdout, done.stderr)

    yield call
    os.environ.clear()
    os.environ.update(saved)


def assert_clean_error(out: subprocess.CompletedProcess, culprit: str) -> str:
    """Non-zero exit; stderr's last line is an ``error:`` line naming ``culprit``; no traceback."""
    assert out.returncode != 0, f"exit 0\nstdout:{out.stdout[-2000:]}\nstderr:{out.stderr[-2000:]}"
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines, f"nothing on stderr (exit {out.returncode}); stdout: {out.stdout[-2000:]}"
    last = lines[-1]
    assert last.startswith("error: "), out.stderr[-3000:]
    assert culprit in last, f"{culprit!r} not in {last!r}"
    return last


def snapshot(root: Path) -> set[str]:
    """Every path below ``root`` (relative), to compare before and after a command."""
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def write_experiments(path: Path, studies: dict[str, dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"studies": studies}, sort_keys=False))
    return path


def tiny_study(**over: Any) -> dict[str, Any]:
    """A study in the experiments.yaml schema around the TINY config; ``over`` replaces keys."""
    study: dict[str, Any] = {
        "description": "reliability test study",
        "objectives": [{"metric": "val_psnr", "mode": "max"}],
        "scheduler": "fifo",
        "config": dict(TINY),
        "profiles": {
            "seed": {"data": "nowhere", "gpus_per_trial": 1},
            "demo": {"cpus_per_trial": 1, "max_concurrent": 2},
        },
    }
    study.update(over)
    return study


def study_args(
    tmp_path: Path, ray_temp_dir: str, study: str, experiments: Path, *, dashboard: bool = False
) -> list[str]:
    """tune/run.py flags for a local study in ``tmp_path`` (dashboard off unless asked: it costs
    start-up time; test_trial_faults.py turns it on to check the port it binds)."""
    # a free port, not the default 8265: other Ray instances may share this machine
    flags = ["--dashboard-port", str(free_port())] if dashboard else ["--no-dashboard"]
    return flags + [
        "--study", study,
        "--experiments", str(experiments),
        "--mlflow-uri", empty_store(tmp_path / "mlflow.db"),
        "--storage", str(tmp_path / "results"),
        "--num-cpus", "2",
        "--ray-temp-dir", ray_temp_dir,
        "--no-report",
    ]  # fmt: skip


def mlflow_runs(uri: str, experiment: str) -> tuple[Any, list, list]:
    """(client, parent runs, child runs) of one MLflow experiment."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def trial_rows(experiment_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Tune trial id -> the rows of its result.json (one per reported epoch, in order).

    Safe to call while the study runs: the driver appends rows and syncs the file to storage by
    copying it, so a reader can see a last line cut short; only complete lines are read."""
    out: dict[str, list[dict[str, Any]]] = {}
    for trial_dir in sorted(experiment_dir.glob("trial_*")):
        try:
            text = (trial_dir / "result.json").read_text()
        except FileNotFoundError:
            continue
        complete = text.split("\n")[:-1]  # the part after the last newline may be half-written
        rows = [json.loads(line) for line in complete if line.strip()]
        if rows:
            out[rows[-1]["trial_id"]] = rows
    return out


def experiment_dirs(tmp_path: Path, study: str) -> list[Path]:
    root = tmp_path / "results" / study
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []


@pytest.fixture
def ray_temp_dir():
    """A short Ray temp dir under /tmp (unix socket paths must stay < 108 bytes). At the end,
    any process still naming it (a Ray worker the test's driver left behind) is ours: killed."""
    path = tempfile.mkdtemp(prefix="rr_", dir="/tmp")
    yield path
    signal_pids(pids_naming(path), signal.SIGKILL)
    shutil.rmtree(path, ignore_errors=True)


def assert_one_error_line(out: subprocess.CompletedProcess, code: int, culprit: str) -> str:
    """Exit ``code``; exactly one ``error:`` line on stderr, its last line, naming ``culprit``;
    no traceback."""
    last = assert_clean_error(out, culprit)
    assert out.returncode == code, f"exit {out.returncode}, not {code}: {last}"
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [last], errors
    return last


@pytest.fixture
def small_fs():
    """``mount(size_kib) -> Path``: a real filesystem of that size (tmpfs) on a fresh directory,
    unmounted at the end, so a write fails the way a full disk fails (ENOSPC). Needs root
    (CAP_SYS_ADMIN), which the tests have here; skipped where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(size_kib: int) -> Path:
        where = Path(tempfile.mkdtemp(prefix="rfs_", dir="/tmp"))
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            where.rmdir()
            pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()})")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)
        shutil.rmtree(where, ignore_errors=True)


def fill(fs: Path, *, leave_kib: int) -> Path:
    """A file that uses all of ``fs`` but ``leave_kib`` KiB."""
    free = shutil.disk_usage(fs).free
    filler = fs / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave_kib * 1024))
    return filler


def resize_fs(fs: Path, size_kib: int) -> None:
    """Give a `small_fs` filesystem a new size (free space appears, as after a clean-up)."""
    subprocess.run(["mount", "-o", f"remount,size={size_kib}k", str(fs)], check=True)
