"""tune/run.py as a command: --dry-run plans for every study; bad input exits 2, starts nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tune import preflight
from tune.preflight import PreflightError
from tune.studies import load_all

REPO = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(REPO / "tune" / "run.py")]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        RUN + args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=120
    )


def test_help_documents_flags(tmp_path):
    out = _run(["--help"], tmp_path)
    assert out.returncode == 0
    for flag in (
        "--study",
        "--profile",
        "--data",
        "--address",
        "--mlflow-uri",
        "--storage",
        "--num-samples",
        "--max-epochs",
        "--gpus-per-trial",
        "--cpus-per-trial",
        "--max-concurrent",
        "--resume",
        "--dry-run",
        "--experiments",
    ):
        assert flag in out.stdout, flag


def test_dry_run_prints_plan_for_every_study(tmp_path):
    for name in load_all(REPO / "experiments.yaml"):
        out = _run(["--study", name, "--dry-run", "--storage", str(tmp_path / "rr")], tmp_path)
        assert out.returncode == 0, out.stderr
        assert "profile 'demo' runs: no --data" in out.stdout
        assert f"study      {name}" in out.stdout
        assert "trials     " in out.stdout and "dry run: nothing started" in out.stdout
        assert "reduced width" in out.stdout
    assert not (tmp_path / "rr").exists()  # a dry run creates nothing
    assert not (tmp_path / "mlflow.db").exists()


def test_dry_run_seed_profile_without_gpu_explains(tmp_path):
    out = _run(
        ["--study", "train-time", "--profile", "seed", "--dry-run", "--data", str(tmp_path)],
        tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error: --gpus-per-trial 1")
    assert "no GPU" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_dry_run_overrides(tmp_path):
    out = _run(
        [
            "--study",
            "loss-weights",
            "--dry-run",
            "--num-samples",
            "6",
            "--max-epochs",
            "2",
            "--cpus-per-trial",
            "0.5",
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "trials     6 (num_samples 6), at most 2 at a time, 2 epoch(s)" in out.stdout
    assert "0.5 CPU" in out.stdout


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--study", "nope"], "unknown study 'nope'; known studies: train-time"),
        (
            ["--study", "loss-weights", "--mlflow-uri", "sqlite:////nonexistent/dir/m.db"],
            "sqlite:////nonexistent/dir/m.db: directory /nonexistent/dir does not exist",
        ),
        (["--study", "loss-weights", "--mlflow-uri", "htp://x:5000"], "unknown scheme 'htp'"),
        (["--study", "loss-weights", "--mlflow-uri", "http://127.0.0.1:9"], "unreachable"),
        (["--study", "loss-weights", "--address", "127.0.0.1:9"], "Ray is not reachable"),
        (["--study", "loss-weights", "--storage", "FILE/sub"], "is not a writable directory"),
        (["--study", "loss-weights", "--max-epochs", "0"], "--max-epochs 0: must be >= 1"),
        (["--study", "loss-weights", "--data", "/no/such/data"], "--data /no/such/data"),
        (["--study", "loss-weights", "--resume"], "--resume: no earlier invocation"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, expect):
    (tmp_path / "FILE").write_text("a file, not a directory")
    out = _run([*args, "--dry-run"] if "--resume" not in args else args, tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert expect in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_bad_experiments_file_names_field(tmp_path):
    bad = tmp_path / "exp.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "studies": {
                    "x": {
                        "search": {"per_w": {"choice": [-1]}},
                        "profiles": {"seed": {}, "demo": {}},
                    }
                }
            }
        )
    )
    out = _run(["--study", "x", "--experiments", str(bad)], tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("error: exp.yaml: study 'x': search.per_w: must be")
    assert not (tmp_path / "ray_results").exists() and not (tmp_path / "mlflow.db").exists()


def test_preflight_checks(tmp_path):
    preflight.check_mlflow_uri(f"sqlite:///{tmp_path}/m.db")
    with pytest.raises(PreflightError, match="use sqlite:///ABSOLUTE"):
        preflight.check_mlflow_uri("sqlite://m.db")
    with socket.socket() as s:  # a listening port counts as reachable
        s.bind(("127.0.0.1", 0))
        s.listen()
        preflight.check_ray_address(f"127.0.0.1:{s.getsockname()[1]}")
    nodes = [{"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}}]
    preflight.check_resources(nodes, gpus_per_trial=0.5, cpus_per_trial=2, source="x")
    with pytest.raises(PreflightError, match="largest node has 1 GPU"):
        preflight.check_resources(nodes, gpus_per_trial=2, cpus_per_trial=1, source="x")
    with pytest.raises(PreflightError, match="4 CPU"):
        preflight.check_resources(nodes, gpus_per_trial=0, cpus_per_trial=8, source="x")
    assert preflight.resolve_storage("rel") == str(Path("rel").resolve())
    assert preflight.resolve_storage("s3://b/x/") == "s3://b/x"
    preflight.write_json(str(tmp_path / "a" / "p.json"), {"k": 1})
    assert preflight.read_json(str(tmp_path / "a" / "p.json")) == {"k": 1}
    assert "--backend-store-uri sqlite:///x" in preflight.mlflow_ui_command("sqlite:///x")
