"""Against a real ``mlflow server`` (HTTP, served artifacts): what a training run leaves there,
the study's best registered as ``ttsr-<study>``, ``ttsr.infer`` by model name, and the
system-metrics thread through a server outage."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ttsr import names

mlflow = pytest.importorskip("mlflow")
from mlflow_server import MlflowServer, train_tiny_run  # noqa: E402

from ttsr.tracking import EXPERIMENT_KIND_TAG, TRAINING_KIND, MlflowTracker  # noqa: E402
from ttsr.tracking.mlflow_model import register_best_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3
STUDY = "server-demo"
warnings.filterwarnings("ignore", message="VGG19 ImageNet weights not found")


def wait_for(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with MlflowServer(tmp_path_factory.mktemp("server")) as s:
        yield s


@pytest.fixture(scope="module")
def trained(server, tmp_path_factory):
    return train_tiny_run(
        server.uri, tmp_path_factory.mktemp("tiny") / "run", experiment=STUDY, epochs=EPOCHS
    )


def test_training_run_on_the_server(server, trained):
    client = mlflow.MlflowClient(server.uri)
    run = client.get_run(trained["run_id"])
    assert run.info.status == "FINISHED"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    # Step-indexed sample grids: one per split and epoch, 0 (before training) .. EPOCHS.
    steps: dict[str, set[int]] = {}
    for info in client.list_artifacts(trained["run_id"], "images"):
        key, _, step = info.path.removeprefix("images/").split("+")[:3]
        if info.path.endswith(".png"):
            steps.setdefault(key, set()).add(int(step))
    assert steps == {k: set(range(EPOCHS + 1)) for k in ("samples_train", "samples_test")}
    # num_samples_grid = 2 rows of 32 px tiles (the training split has 3 items), shown upscaled
    # x4 (tiles of 128 px) under a header row (ttsr.grids.display_grid)
    png = next(
        a.path
        for a in client.list_artifacts(trained["run_id"], "images")
        if a.path.startswith("images/samples_train+") and a.path.endswith(".png")
    )
    local = client.download_artifacts(trained["run_id"], png)
    width, height = Image.open(local).size
    assert width == 4 * (4 * 32 + 10) and height > 4 * (2 * 32 + 6)
    # Dataset inputs: the training and the validation split.
    contexts = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(contexts) == {"train", "validation"}
    assert all(d.digest and d.source_type == "local" for d in contexts.values())
    # System metrics through the explicit client, at least one sample.
    history = client.get_metric_history(trained["run_id"], "system/cpu_utilization_percentage")
    assert len(history) >= 1
    assert "system/process_memory_rss_megabytes" in run.data.metrics
    # The best checkpoint as the run's model, at the best epoch, its files on the server.
    (output,) = run.outputs.model_outputs
    assert output.step == trained["result"].best_epoch
    model = client.get_logged_model(output.model_id)
    assert model.status == "READY" and model.source_run_id == trained["run_id"]
    files = {a.path for a in client.list_logged_model_artifacts(output.model_id)}
    assert {"MLmodel", "data", "requirements.txt", "code"} <= files
    assert run.data.tags[names.STOP_REASON] == names.STOP_MAX_EPOCHS


def test_best_model_registered_and_inferred_by_name(server, trained, tmp_path):
    assert register_best_model(server.uri, STUDY, trained["run_id"]) == 1
    client = mlflow.MlflowClient(server.uri, registry_uri=server.uri)
    (version,) = client.search_model_versions(f"name = 'ttsr-{STUDY}'")
    assert version.version == "1" and version.run_id == trained["run_id"]

    rng = np.random.default_rng(1)
    lr, ref = tmp_path / "lr.png", tmp_path / "ref.png"
    Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(lr)
    Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(ref)
    best_file = trained["result"].best_checkpoint / "model.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    outputs = []
    for i, checkpoint in enumerate([str(best_file), f"models:/ttsr-{STUDY}/latest"]):
        out = tmp_path / f"sr{i}.png"
        cmd = [sys.executable, "-m", "ttsr.infer", "--checkpoint", checkpoint]
        cmd += ["--lr", str(lr), "--ref", str(ref), "--out", str(out), "--mlflow-uri", server.uri]
        done = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(np.asarray(Image.open(out)))
    assert outputs[0].shape == (36, 44, 3)
    assert np.array_equal(outputs[0], outputs[1])


@pytest.mark.slow
def test_system_metrics_survive_a_server_outage(server, monkeypatch):
    # Fail fast while the server is down (the client's default is minutes of retries, which
    # would only delay samples, not lose them).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    tracker = MlflowTracker(tracking_uri=server.uri, experiment="outage", run_name="outage")
    monitor = tracker.start_system_metrics(interval=0.2)
    wait_for(lambda: monitor.logged >= 2, timeout=60, what="samples before the outage")
    server.stop()
    wait_for(lambda: monitor.dropped >= 2, timeout=60, what="samples dropped in the outage")
    assert monitor.running
    server.start()
    before = monitor.logged
    wait_for(lambda: monitor.logged >= before + 2, timeout=60, what="samples after the outage")
    tracker.end()
    assert not monitor.running
    client = mlflow.MlflowClient(server.uri)
    steps = [
        m.step
        for m in client.get_metric_history(tracker.run_id, "system/cpu_utilization_percentage")
    ]
    assert len(steps) == monitor.logged and len(set(steps)) == len(steps)
    assert max(steps) + 1 > len(steps)  # the dropped samples' steps are missing, no crash
    assert client.get_run(tracker.run_id).info.status == "FINISHED"
