"""A real two-node Ray cluster on one machine runs tune/run.py studies tracked by a real MLflow
tracking server: trials land on both nodes, the trial that asks for a GPU lands on the node that
declares one and falls back to CPU (there is no CUDA here) and says so, every child run and its
artifacts reach the server over HTTP, and Tune's results land in the shared storage path.

Fixtures (cluster, server, the finished studies): conftest.py. Run with
``python3 -m pytest -q -m slow tests/cluster``.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from ttsr import names
from tune.execution import parent_run, storage

from .conftest import GPU_STUDY, SPREAD_STUDY, TINY_CONFIG, StudyResult, alive_nodes

pytestmark = pytest.mark.slow

EPOCHS = TINY_CONFIG["epochs"]
TRIALS = {SPREAD_STUDY: 2, GPU_STUDY: 1}
_FIXTURE = {SPREAD_STUDY: "spread_study", GPU_STUDY: "gpu_study"}


def _get_json(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read().decode())


def _experiment_dir(result: StudyResult) -> Path:
    """The one Tune experiment directory run.py made for the study inside --storage."""
    dirs = [p for p in (result.storage / result.name).iterdir() if p.is_dir()]
    assert len(dirs) == 1, f"expected one invocation under {result.storage / result.name}: {dirs}"
    return dirs[0]


def _trial_results(result: StudyResult) -> dict[str, list[dict[str, Any]]]:
    """Tune trial id -> the rows of its result.json (one per reported epoch)."""
    out = {}
    for trial_dir in sorted(_experiment_dir(result).glob("trial_*")):
        rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        out[rows[-1]["trial_id"]] = rows
    return out


def _node_ips(dashboard_url: str) -> dict[str, str]:
    """node IP -> node id (each node has its own loopback address in this cluster)."""
    return {
        n["raylet"]["nodeManagerAddress"]: n["raylet"]["nodeId"] for n in alive_nodes(dashboard_url)
    }


def _trial_actors(dashboard_url: str) -> dict[int, dict[str, Any]]:
    """pid -> actor record from Ray's state API (includes dead actors), for Tune trial actors."""
    query = urllib.parse.urlencode({"limit": 10000, "detail": "true"})
    data = _get_json(f"{dashboard_url}/api/v0/actors?{query}")
    actors = data["data"]["result"]["result"]
    return {a["pid"]: a for a in actors if a.get("pid")}


def _finished(result: StudyResult) -> StudyResult:
    """The study's run.py invocation exited 0 (else show the end of its output)."""
    tail = "\n".join(result.output.splitlines()[-60:])
    assert result.returncode == 0, f"{result.name}: run.py exited {result.returncode}:\n{tail}"
    return result


def test_cluster_has_a_cpu_node_and_a_gpu_node(ray_cluster):
    nodes = alive_nodes(ray_cluster.dashboard_url)
    assert len(nodes) == 2
    totals = sorted(
        (n["raylet"]["resourcesTotal"].get("CPU", 0), n["raylet"]["resourcesTotal"].get("GPU", 0))
        for n in nodes
    )
    assert totals == [(1.0, 0), (1.0, 1.0)]
    assert ray_cluster.head_node_id != ray_cluster.gpu_node_id


def test_trials_ran_on_both_nodes(spread_study, ray_cluster):
    ips = _node_ips(ray_cluster.dashboard_url)
    actors = _trial_actors(ray_cluster.dashboard_url)
    spread = _trial_results(_finished(spread_study))
    assert len(spread) == TRIALS[SPREAD_STUDY]
    # Tune records where each trial ran (node_ip, pid); the state API confirms it per actor.
    used = set()
    for trial_id, rows in spread.items():
        node_ip, pid = rows[-1]["node_ip"], rows[-1]["pid"]
        assert node_ip in ips, f"trial {trial_id} ran on {node_ip}, not a cluster node {ips}"
        assert actors[pid]["node_id"] == ips[node_ip], f"trial {trial_id}: state API disagrees"
        used.add(ips[node_ip])
    assert used == {ray_cluster.head_node_id, ray_cluster.gpu_node_id}


def test_gpu_trial_landed_on_gpu_node_and_fell_back_to_cpu(gpu_study, ray_cluster, mlflow_server):
    ips = _node_ips(ray_cluster.dashboard_url)
    actors = _trial_actors(ray_cluster.dashboard_url)
    gpu = _trial_results(_finished(gpu_study))
    assert len(gpu) == TRIALS[GPU_STUDY]
    client = MlflowClient(mlflow_server.uri)
    exp = client.get_experiment_by_name(GPU_STUDY)
    for trial_id, rows in gpu.items():
        actor = actors[rows[-1]["pid"]]
        assert ips[rows[-1]["node_ip"]] == ray_cluster.gpu_node_id
        assert actor["node_id"] == ray_cluster.gpu_node_id
        # Tune places trials in placement groups: the GPU shows as GPU or GPU_group_*
        required = actor["required_resources"]
        assert any(k == "GPU" or k.startswith("GPU_group") for k in required), required
        runs = client.search_runs(
            [exp.experiment_id], filter_string=f"tags.{parent_run.TRIAL_ID_TAG} = '{trial_id}'"
        )
        assert len(runs) == 1
        tags = runs[0].data.tags
        assert tags.get("device") == "cpu", f"trial {trial_id} device tag: {tags.get('device')}"
        assert tags.get("device_fallback"), f"trial {trial_id}: no device_fallback tag: {tags}"
    # The spread study asked for no GPU: no fallback to report there.
    exp = client.get_experiment_by_name(SPREAD_STUDY)
    for run in client.search_runs([exp.experiment_id], filter_string="tags.trial_id != ''"):
        assert run.data.tags.get("device") == "cpu"
        assert "device_fallback" not in run.data.tags


def _artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for info in client.list_artifacts(run_id, path):
        out += _artifact_paths(client, run_id, info.path) if info.is_dir else [info.path]
    return out


@pytest.mark.parametrize("study", [SPREAD_STUDY, GPU_STUDY])
def test_child_runs_and_artifacts_reached_server(request, mlflow_server, study):
    result = _finished(request.getfixturevalue(_FIXTURE[study]))
    trial_ids = set(_trial_results(result))
    client = MlflowClient(mlflow_server.uri)
    exp = client.get_experiment_by_name(study)
    assert exp is not None, f"no MLflow experiment {study!r} on {mlflow_server.uri}"
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if parent_run.PARENT_TAG not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get(parent_run.PARENT_TAG) == parent.info.run_id]
    assert len(children) == len(runs) - 1 == TRIALS[study]
    assert {c.data.tags[parent_run.TRIAL_ID_TAG] for c in children} == trial_ids
    for child in children:
        run_id = child.info.run_id
        assert child.info.status == "FINISHED"
        history = client.get_metric_history(run_id, names.VAL_PSNR)
        assert sorted(m.step for m in history) == list(range(0, EPOCHS + 1))
        artifacts = _artifact_paths(client, run_id)
        assert any(a.endswith(".png") for a in artifacts), f"no sample images: {artifacts}"
        models = child.outputs.model_outputs if child.outputs else []
        assert models, f"trial {child.data.tags[parent_run.TRIAL_ID_TAG]}: no logged model"
        # Served artifacts: the files live in the server's artifact root, uploaded over HTTP.
        stored = list(
            mlflow_server.artifacts_dir.glob(f"{exp.experiment_id}/{run_id}/artifacts/**/*")
        )
        assert {p.name for p in stored if p.is_file()} >= {Path(a).name for a in artifacts}
        local = client.download_artifacts(run_id, next(a for a in artifacts if a.endswith(".png")))
        assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("study", [SPREAD_STUDY, GPU_STUDY])
def test_results_landed_in_shared_storage(request, study):
    result = _finished(request.getfixturevalue(_FIXTURE[study]))
    exp_dir = _experiment_dir(result)
    assert exp_dir.parent.parent == result.storage
    assert (exp_dir / storage.PARENT_FILE).is_file()
    trials = _trial_results(result)
    assert len(trials) == TRIALS[study]
    for trial_id, rows in trials.items():
        assert [r[names.EPOCH] for r in rows] == list(range(0, EPOCHS + 1))
        assert all(isinstance(r[names.VAL_PSNR], float) for r in rows)
        trial_dir = exp_dir / f"trial_{trial_id}"
        checkpoints = sorted(trial_dir.glob("checkpoint_*"))
        assert checkpoints, f"no checkpoint in {trial_dir}"
        assert any(p.is_file() for p in checkpoints[-1].iterdir())
