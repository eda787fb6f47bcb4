"""From flags to a plan without a cluster: options, the profile rule against a stand-in
cluster, resources, and the printed plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from tune.execution.cluster import Cluster
from tune.study import plan
from tune.study.options import parse_options
from tune.study.preflight import PreflightError
from tune.study.studies import StudyError, StudyFile

SHIPPED = Path(__file__).resolve().parent.parent / "experiments.yaml"


def _options(tmp_path: Path, *extra: str):
    base = [
        "--dry-run",
        "--storage",
        str(tmp_path / "rr"),
        "--mlflow-uri",
        f"sqlite:///{tmp_path}/m.db",
    ]
    return parse_options([*base, *extra])


def _node(cpus: float, gpus: float) -> dict:
    return {"Alive": True, "Resources": {"CPU": cpus, "GPU": gpus}}


def test_profile_follows_data_and_the_cluster_gpus(tmp_path):
    studies = StudyFile.load(SHIPPED)
    options = _options(tmp_path, "--study", "train-time", "--data", str(tmp_path))
    request = plan.check(studies, options)
    gpu = plan.make(request, options, Cluster((_node(8, 1),), "test cluster"))
    assert gpu.study.profile == "seed" and gpu.study.config["data"] == str(tmp_path.resolve())
    assert gpu.experiment_dir.startswith(f"{tmp_path}/rr/train-time/train-time-")
    text = gpu.describe()
    assert text.startswith("profile 'seed' runs: --data given and the cluster has 1 GPU(s)")
    assert "report     speed against size" in text and "ray        test cluster" in text
    cpu = plan.make(request, options, Cluster((_node(8, 0),), "cpu only"))
    assert cpu.study.profile == "demo" and "no GPUs" in cpu.reason
    forced = _options(
        tmp_path, "--study", "train-time", "--profile", "seed", "--data", str(tmp_path)
    )
    # a dry run plans anyway and records what would stop the real run; a real run stops
    dry = plan.make(plan.check(studies, forced), forced, Cluster((_node(8, 0),), "cpu only"))
    assert len(dry.blockers) == 1 and dry.blockers[0].startswith("--gpus-per-trial 1")
    assert "no GPU" in dry.blockers[0] and "would stop --gpus-per-trial 1" in dry.describe()
    real = parse_options([*forced_args(tmp_path), "--study", "train-time", "--profile", "seed"])
    with pytest.raises(PreflightError, match="--gpus-per-trial 1 .*no GPU"):
        plan.make(plan.check(studies, real), real, Cluster((_node(8, 0),), "cpu only"))


def forced_args(tmp_path: Path) -> list[str]:
    """A real (not dry) run's flags: storage and store in tmp_path, --data there."""
    return ["--storage", str(tmp_path / "rr"), "--mlflow-uri", f"sqlite:///{tmp_path}/m.db",
            "--data", str(tmp_path)]  # fmt: skip


def test_flags_become_overrides_named_after_the_flag(tmp_path):
    studies = StudyFile.load(SHIPPED)
    options = _options(tmp_path, "--study", "loss-weights", "--max-epochs", "3", "--set", "lr=2e-4")
    assert options.overrides() == {"lr": 2e-4, "epochs": 3}
    request = plan.check(studies, options)
    assert request.studies["demo"].config["epochs"] == 3
    assert request.studies["seed"].config["lr"] == 2e-4  # every profile gets them
    both = _options(tmp_path, "--study", "loss-weights", "--set", "epochs=2", "--max-epochs", "3")
    with pytest.raises(StudyError, match="--set epochs and --max-epochs both set epochs"):
        both.overrides()
    with pytest.raises(StudyError, match="unknown study 'nope'; known studies: train-time"):
        plan.check(studies, _options(tmp_path, "--study", "nope"))
    assert not (tmp_path / "rr").exists() and not (tmp_path / "m.db").exists()


def test_list_has_a_line_per_study():
    text = plan.list_studies(StudyFile.load(SHIPPED))
    rows = {line.split()[0]: line for line in text.splitlines()}
    assert set(rows) == set(StudyFile.load(SHIPPED))
    assert rows["resolution"].split()[1:3] == ["scaling", "grid"]
    assert rows["resolution"].endswith("trials: demo 6, seed 4")  # 3 sizes x 2 seeds


def test_the_plan_shows_loader_workers_and_refuses_a_0_worker_gpu_trial(tmp_path):
    studies = StudyFile.load(SHIPPED)
    options = _options(tmp_path, "--study", "train-time", "--data", str(tmp_path))
    gpu = plan.make(plan.check(studies, options), options, Cluster((_node(8, 1),), "gpu"))
    cpus = max(1, int(gpu.study.cpus_per_trial))
    workers = max(1, min(8, cpus - 1))
    assert f"loader     {workers} worker(s) per trial (automatic" in gpu.describe()
    cpu = plan.make(plan.check(studies, options), options, Cluster((_node(8, 0),), "cpu"))
    assert "loader     0 worker(s) per trial (automatic on CPU)" in cpu.describe()
    zero = [*forced_args(tmp_path), "--study", "train-time", "--profile", "seed"]
    zero = parse_options([*zero, "--set", "num_workers=0"])
    with pytest.raises(PreflightError, match="num_workers 0 in study 'train-time': a GPU trial"):
        plan.make(plan.check(studies, zero), zero, Cluster((_node(8, 1),), "gpu"))
    dry = _options(tmp_path, "--study", "train-time", "--set", "num_workers=0")
    two = _options(tmp_path, "--study", "train-time", "--set", "num_workers=2")
    assert "num_workers 0" not in " ".join(
        plan.make(plan.check(studies, dry), dry, Cluster((_node(8, 0),), "cpu")).blockers
    )  # the demo profile runs on the CPU: 0 workers is its default
    assert (
        "loader     2 worker(s)"
        in plan.make(plan.check(studies, two), two, Cluster((_node(8, 0),), "cpu")).describe()
    )
