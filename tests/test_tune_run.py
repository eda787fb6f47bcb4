"""tune/run.py as a command: --dry-run plans for every study; bad input exits 2, starts nothing.

Most run its ``main`` in this process (the ``cli`` fixture: stdout and stderr captured at the file
descriptors, so a stray log line still counts); a few run the command itself, which is what they
are about (another directory, a clean import, CUDA hidden, no cached VGG weights)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from clis import call_main

from tune.study import preflight
from tune.study.preflight import PreflightError
from tune.study.studies import load_all

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


@pytest.fixture
def cli(tmp_path, monkeypatch, capfd, restore_environ):
    """``cli(args)``: tune/run.py's ``main`` in this process, in ``tmp_path``, without
    RAY_ADDRESS or MLFLOW_TRACKING_URI; a CompletedProcess of its exit code and output."""
    from tune.run import main

    monkeypatch.chdir(tmp_path)
    for name in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")

    return lambda args: call_main(main, args, capfd)


def test_help_documents_flags(tmp_path, cli):
    out = cli(["--help"])
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


def test_dry_run_prints_plan_for_every_study(tmp_path, cli):
    for name in load_all(REPO / "experiments.yaml"):
        out = cli(["--study", name, "--dry-run", "--storage", str(tmp_path / "rr")])
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


def test_dry_run_overrides(tmp_path, cli):
    out = cli(
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
        ]
    )
    assert out.returncode == 0, out.stderr
    # loss-weights (demo) repeats every configuration over 3 seeds
    assert "trials     18 (num_samples 6 × 3 seeds), at most 2 at a time, 2 epoch(s)" in out.stdout
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
def test_bad_input_exits_2_with_one_line(tmp_path, args, expect, cli):
    (tmp_path / "FILE").write_text("a file, not a directory")
    out = cli([*args, "--dry-run"] if "--resume" not in args else args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert expect in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_bad_experiments_file_names_field(tmp_path, cli):
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
    out = cli(["--study", "x", "--experiments", str(bad)])
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
    assert "--backend-store-uri sqlite:///x" in preflight.mlflow_ui_command("sqlite:///x")
    # storage helpers (resolve_storage, read/write_json): tests/test_tune_storage.py


def test_set_overrides_are_validated_applied_and_printed(tmp_path, cli):
    out = cli(["--study", "loss-weights", "--dry-run", "--set", "lr=3e-4", "--set", "repeats=3"])
    assert out.returncode == 0, out.stderr
    assert "trials     6 (num_samples 2 × 3 seeds)" in out.stdout
    assert "overrides  lr=0.0003, repeats=3" in out.stdout
    assert "'lr': 0.0003" in out.stdout  # in the fixed config the trials get


@pytest.mark.parametrize(
    ("sets", "expect"),
    [
        (["lrr=1"], "--set lrr: unknown key (did you mean lr?)"),
        (["lr=-1"], "--set lr: must be"),
        (["lr"], "--set lr: use KEY=VALUE"),
        (["repeats=0"], "--set repeats: must be an integer >= 1 (got 0)"),
        (["per_w=0.1"], "--set per_w: the study varies this key"),
        (["lr=1", "lr=2"], "--set lr: given twice"),
    ],
)
def test_bad_set_exits_2_with_one_line_and_starts_nothing(tmp_path, sets, expect, cli):
    args = ["--study", "loss-weights", "--storage", str(tmp_path / "rr")]
    out = cli([*args, *[a for s in sets for a in ("--set", s)]])
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert expect in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert list(tmp_path.iterdir()) == []  # no storage, no mlflow.db


def test_list_prints_one_line_per_study(tmp_path, cli):
    out = cli(["--list"])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(load_all(REPO / "experiments.yaml"))
    row = dict(zip([line.split()[0] for line in lines], lines, strict=True))
    assert "tradeoff" in row["loss-weights"] and "demo 6, seed 24" in row["loss-weights"]
    assert "speed" in row["train-time"] and "grid" in row["train-time"]


def test_runs_from_another_directory_without_pythonpath(tmp_path):
    env = {k: v for k, v in _env().items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [*RUN, "--list"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "loss-weights" in out.stdout


def test_importing_run_changes_nothing():
    code = (
        "import os, sys; env, path = dict(os.environ), list(sys.path); import tune.run; "
        "assert dict(os.environ) == env and sys.path == path; "
        "assert not {'ray', 'mlflow', 'optuna'} & set(sys.modules), 'heavy import'"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr


@pytest.fixture
def restore_environ():
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_one_invocation_parses_experiments_yaml_once(tmp_path, monkeypatch, restore_environ):
    import tune.study.studies
    from tune.run import main

    calls = []
    real = tune.study.studies._read_studies
    monkeypatch.setattr(tune.study.studies, "_read_studies", lambda p: calls.append(p) or real(p))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    storage = str(tmp_path / "rr")
    mlflow_uri = f"sqlite:///{tmp_path}/m.db"
    args = ["--dry-run", "--storage", storage, "--mlflow-uri", mlflow_uri, "--set", "lr=1e-3"]
    assert main(["--study", "loss-weights", *args]) == 0
    assert calls == [REPO / "experiments.yaml"]
    # the local Ray's trial workers would import ttsr and tune from this checkout
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(REPO)


def _no_vgg_env(tmp_path: Path) -> dict[str, str]:
    env = _env()
    env.pop("TTSR_VGG19_WEIGHTS", None)
    env["TORCH_HOME"] = str(tmp_path / "empty-torch-home")  # no cached VGG19 weights
    return env


def test_seed_profile_refuses_without_imagenet_vgg19(tmp_path):
    args = ["--study", "loss-weights", "--profile", "seed", "--data", str(tmp_path)]
    args += ["--storage", str(tmp_path / "rr"), "--mlflow-uri", f"sqlite:///{tmp_path}/m.db"]
    out = subprocess.run(
        RUN + args,
        cwd=tmp_path,
        env=_no_vgg_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    err = out.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: study 'loss-weights' (seed")
    assert "python -m ttsr.vgg download" in err and "--allow-random-vgg" in err
    assert "TTSR_VGG19_WEIGHTS" in err
    assert not (tmp_path / "rr").exists() and not (tmp_path / "m.db").exists()
    assert "Ray" not in out.stdout  # refused before a Ray was started


def test_allow_random_vgg_and_the_demo_say_so(tmp_path):
    # --allow-random-vgg: past the VGG check (this machine then stops on the missing GPU).
    args = ["--study", "loss-weights", "--profile", "seed", "--data", str(tmp_path)]
    out = subprocess.run(
        RUN + [*args, "--allow-random-vgg", "--dry-run"],
        cwd=tmp_path,
        env=_no_vgg_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "VGG19" not in out.stderr and "--gpus-per-trial" in out.stderr
    # the demo runs on random features and its plan says so
    out = subprocess.run(
        RUN + ["--study", "loss-weights", "--dry-run", "--storage", str(tmp_path / "rr")],
        cwd=tmp_path,
        env=_no_vgg_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "RANDOM VGG features" in out.stdout
    # a speed study does not need the weights at all
    out = subprocess.run(
        RUN + ["--study", "train-time", "--dry-run", "--storage", str(tmp_path / "rr")],
        cwd=tmp_path,
        env=_no_vgg_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "RANDOM VGG" not in out.stdout


@pytest.mark.parametrize("flags, port", [([], None), (["--dashboard-port", "8300"], 8300)])
def test_a_second_local_study_gets_the_next_free_dashboard_port(monkeypatch, capsys, flags, port):
    """By default Ray picks the dashboard port (8265, or the next free one: a study already runs
    there; a fixed 8265 failed with 'already occupied'); a port given with --dashboard-port is
    kept (Ray refuses it when taken). The printed link is the one Ray serves."""
    import ray

    from tune.execution import cluster
    from tune.study.options import parse_options

    seen = {}

    def fake_init(**kwargs):
        seen.update(kwargs)
        return type("Context", (), {"dashboard_url": "127.0.0.1:8266"})()

    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}])
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with cluster.connect(parse_options(["--study", "loss-weights", *flags])):
        pass
    assert seen["dashboard_port"] == port and seen["include_dashboard"]
    assert "Ray dashboard: http://127.0.0.1:8266 " in capsys.readouterr().out
