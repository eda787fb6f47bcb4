import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from clis import AS_FROM_A_TERMINAL
from PIL import Image
from tiny import tiny_config

from ttsr import names
from ttsr.checkpoint import load_state
from ttsr.config import TrainConfig
from ttsr.tracking import (
    EXPERIMENT_KIND_TAG,
    TRAINING_KIND,
    MlflowCallback,
    MlflowTracker,
    beside_database,
    flatten_params,
    get_or_create_experiment,
)
from ttsr.train import Callback, train

mlflow = pytest.importorskip("mlflow")
warnings.filterwarnings("ignore", message="VGG19 ImageNet weights not found")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/test_train.py
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    # Artifacts next to the database, not in the working directory.
    return f"sqlite:///{root}/mlflow.db", root


def tracker(uri, **kw):
    db, root = uri
    return MlflowTracker(
        tracking_uri=db,
        experiment=kw.pop("experiment", "test"),
        artifact_location=(root / "artifacts").as_uri(),
        **kw,
    )


def status(uri, run_id):
    return mlflow.MlflowClient(uri[0]).get_run(run_id).info.status


def tiny(tmp_path, **changes) -> TrainConfig:
    return tiny_config(tmp_path, **{"epochs": 2, "num_samples_grid": 1, **changes})


def test_flatten_params():
    flat = flatten_params({"a": 1, "b": (0.5, 0.8), "c": {"d": None, "e": "x"}})
    assert flat == {"a": "1", "b": "0.5,0.8", "c.d": "None", "c.e": "x"}


def test_lifecycle_params_metrics_and_resume(uri, tmp_path):
    client = mlflow.MlflowClient(uri[0])
    first = tracker(uri, run_name="parent")  # also creates the experiment in the tmp store
    parent = first.run_id
    first.end()
    with tracker(uri, run_name="unit", parent_run_id=parent, tags={"k": "v"}) as t:
        t.log_params({"lr": 1e-4, "extra": {"note": "hi"}})
        t.log_metrics({"val_psnr": 20.0, names.STOP_REASON: "patience"}, step=1)
        t.log_metrics({"val_psnr": 21.0}, step=2)
        png = tmp_path / "g.png"
        Image.new("RGB", (4 * 8 + 10, 8 + 4), "red").save(png)  # one row of 8 px tiles
        t.log_image(png, key="samples_test", step=3)
        assert status(uri, t.run_id) == "RUNNING"
    run = client.get_run(t.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.0001", "extra.note": "hi"}
    assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["k"] == "v"
    assert run.data.tags[names.STOP_REASON] == "patience"
    assert [(m.step, m.value) for m in client.get_metric_history(t.run_id, "val_psnr")] == [
        (1, 20.0),
        (2, 21.0),
    ]
    images = [a.path for a in client.list_artifacts(t.run_id, "images")]
    assert len(images) == 2 and all(p.startswith("images/samples_test+step+3+") for p in images)
    assert run.data.tags["mlflow.loggedImages"] == "True"

    # Re-open the same run (resume): equal params are skipped, a changed one becomes a tag.
    with tracker(uri, run_id=t.run_id) as again:
        assert again.run_id == t.run_id and status(uri, t.run_id) == "RUNNING"
        again.log_params({"lr": 1e-4, "extra": {"note": "bye"}, "epochs": 3})
    run = client.get_run(t.run_id)
    assert run.data.params["epochs"] == "3" and run.data.params["extra.note"] == "hi"
    assert run.data.tags["param_changed.extra.note"] == "bye"
    assert run.info.status == "FINISHED"


@pytest.mark.parametrize(
    ("error", "expected"), [(RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")]
)
def test_exit_status(uri, error, expected):
    t = tracker(uri)
    with pytest.raises(error):
        with t:
            raise error("stop")
    assert status(uri, t.run_id) == expected
    t.end("FINISHED")  # ending twice does nothing
    assert status(uri, t.run_id) == expected


def test_experiments_are_tagged_as_model_training(uri):
    client = mlflow.MlflowClient(uri[0])
    made = get_or_create_experiment(client, "made-here")
    assert client.get_experiment(made).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    # An experiment someone else made without the tag gets it; one that names a kind keeps it.
    bare = client.create_experiment("made-elsewhere")
    genai = client.create_experiment("genai", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    assert get_or_create_experiment(client, "made-elsewhere") == bare
    assert client.get_experiment(bare).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    get_or_create_experiment(client, "genai")
    assert client.get_experiment(genai).tags[EXPERIMENT_KIND_TAG] == "genai_development"
    # A deleted experiment comes back, tagged.
    client.delete_experiment(bare)
    assert get_or_create_experiment(client, "made-elsewhere") == bare
    assert client.get_experiment(bare).lifecycle_stage == "active"


def test_train_logs_params_metrics_images_and_checkpoint(uri, tmp_path):
    t = tracker(uri, run_name="train")
    callback = MlflowCallback(t, system_metrics_interval=60.0)  # one sample: the one at the end
    with t:
        result = train(
            tiny(tmp_path),
            callbacks=[callback],
            progress=False,
            checkpoint_extra={"tracker_run_id": t.run_id},
        )
    client = mlflow.MlflowClient(uri[0])
    run = client.get_run(t.run_id)
    assert client.get_experiment(run.info.experiment_id).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    assert run.info.status == "FINISHED"
    assert run.data.params["size"] == "32" and run.data.params["num_res_blocks"] == "1+1+1+1"
    # Params: what the run sets (the non-default values); the whole config is config.json.
    assert "inpaint_box" not in run.data.params and "gan_k" not in run.data.params
    local = client.download_artifacts(t.run_id, "config.json", str(tmp_path))
    config = json.loads(Path(local).read_text())
    assert config == json.loads(json.dumps(tiny(tmp_path).to_dict()))
    assert TrainConfig.from_dict(config) == tiny(tmp_path)  # what re-running it needs
    # Kept-epoch summaries: the last value of best_<metric> is the kept epoch's <metric>.
    kept = result.history[result.best_epoch]
    for metric in (names.VAL_PSNR, names.VAL_SSIM, names.VAL_LPIPS_PROXY):
        assert run.data.metrics[names.kept(metric)] == pytest.approx(kept[metric])
    assert run.data.metrics[names.BEST_EPOCH] == result.best_epoch
    assert result.best_val_psnr == pytest.approx(kept[names.VAL_PSNR])
    history = client.get_metric_history(t.run_id, names.VAL_PSNR)
    assert sorted(m.step for m in history) == [0, 1, 2]  # epoch 0: before training
    assert {m.value for m in history} == {h[names.VAL_PSNR] for h in result.history}
    for key in (names.LOSS_REC, names.BICUBIC_PSNR, names.EPOCH_SECONDS, names.LR_MAIN):
        assert key in run.data.metrics
    # Sample grids: a step-indexed image per split and epoch (PNG + MLflow's webp thumbnail).
    images = [a.path.removeprefix("images/") for a in client.list_artifacts(t.run_id, "images")]
    pngs = {tuple(p.split("+")[:3]) for p in images if p.endswith(".png")}
    assert pngs == {(f"samples_{s}", "step", str(e)) for e in (0, 1, 2) for s in ("train", "test")}
    assert not client.list_artifacts(t.run_id, "samples")  # no second copy of the grids
    # The data: training and validation splits as dataset inputs.
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "validation"}
    assert inputs["train"].name == "sample-train" and inputs["validation"].name == "sample-test"
    assert '"items": 1' in inputs["validation"].profile  # val_limit 1 of the test split
    # System metrics: at least one sample, CPU and memory (no GPU here).
    system = {k for k in run.data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/process_memory_rss_megabytes"} <= system
    assert t.monitor is not None and not t.monitor.running and t.monitor.logged >= 1
    # The best checkpoint as the run's MLflow model, at the best epoch.
    (output,) = run.outputs.model_outputs
    assert output.model_id == callback.model_id and output.step == result.best_epoch
    model = client.get_logged_model(output.model_id)
    assert model.status == "READY" and model.source_run_id == t.run_id
    assert model.tags["epoch"] == str(result.best_epoch)
    tags = run.data.tags
    assert tags[names.STOP_REASON] == names.STOP_MAX_EPOCHS
    assert tags[names.BEST_EPOCH] == str(result.best_epoch)
    assert tags["vgg_pretrained"] in ("true", "false") and tags["device"] == "cpu"
    if tags["vgg_pretrained"] == "false":
        assert "RANDOM" in tags["warning"] or "random" in tags["warning"]
    assert load_state(result.best_checkpoint)["tracker_run_id"] == t.run_id


@pytest.mark.parametrize(
    ("error", "expected"), [(KeyboardInterrupt, "KILLED"), (ValueError, "FAILED")]
)
def test_train_interrupted_or_failing_marks_run(uri, tmp_path, error, expected):
    t = tracker(uri)

    class Failing(Callback):
        def on_epoch_end(self, metrics, checkpoint_dir, images):
            if metrics[names.EPOCH] == 1:
                raise error("from the callback")

    with pytest.raises(error):
        with t:
            train(
                tiny(tmp_path, sample_every=0),
                callbacks=[MlflowCallback(t), Failing()],
                progress=False,
            )
    assert status(uri, t.run_id) == expected
    # The epoch was logged before the callback ran.
    assert mlflow.MlflowClient(uri[0]).get_run(t.run_id).data.metrics[names.EPOCH] == 1


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_cli_marks_run_killed(uri, tmp_path, sig):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "ttsr.train",
        "--size",
        "32",
        "--batch-size",
        "2",
        "--fraction",
        "0.03",
        "--val-limit",
        "1",
        "--n-feats",
        "8",
        "--num-res-blocks",
        "1+1+1+1",
        "--device",
        "cpu",
        "--epochs",
        "50",
        "--patience",
        "50",
        "--out",
        str(out),
        "--no-progress",
        "--mlflow-uri",
        uri[0],
        "--experiment",
        "signals",
        "--sample-every",
        "0",
    ]
    # Run from tmp_path so that nothing (e.g. a default ./mlruns) lands in the repository.
    env = {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [*AS_FROM_A_TERMINAL, *cmd],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    latest = out / "checkpoints" / "latest" / "state.pt"
    deadline = time.time() + 300
    while not latest.is_file():
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline, "no checkpoint in time"
        time.sleep(0.2)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    run_id = load_state(latest)["tracker_run_id"]
    assert status(uri, run_id) == "KILLED"


def test_dataset_inputs_retry_a_collision_with_a_parallel_trial(uri):
    from mlflow.exceptions import MlflowException

    t = tracker(uri)
    calls = []
    real = t.client.log_inputs

    def collide_once(run_id, datasets):
        calls.append(run_id)
        if len(calls) == 1:  # what SQLite says when another trial inserted the dataset first
            raise MlflowException("UNIQUE constraint failed: datasets.experiment_id, ...")
        return real(run_id, datasets=datasets)

    t.client.log_inputs = collide_once
    from mlflow.entities import Dataset, DatasetInput

    t.log_inputs([DatasetInput(Dataset("d", "abc", "local", '{"uri": "/x"}'))])
    t.end()
    assert len(calls) == 2
    run = mlflow.MlflowClient(uri[0]).get_run(t.run_id)
    assert [i.dataset.name for i in run.inputs.dataset_inputs] == ["d"]


def test_system_metrics_of_the_runs_own_gpu(uri, monkeypatch):
    from ttsr.tracking import system_metrics as sm

    class Reader:  # a host with 4 GPUs; this run was given NVML device 3
        def devices(self):
            return [(i, f"GPU-{i}{i}{i}") for i in range(4)]

        def read(self, indices):
            return {i: {"utilization_percentage": 50.0 + i} for i in indices}

    monkeypatch.setattr(sm, "gpu_reader", Reader)
    monkeypatch.setattr(sm, "this_process_gpus", lambda reader: [sm.GpuWatch(0, 3, "333")])
    t = tracker(uri)
    t.start_system_metrics(interval=60.0, gpu=True)
    t.end()
    run = mlflow.MlflowClient(uri[0]).get_run(t.run_id)
    assert run.data.metrics["system/gpu_0_utilization_percentage"] == 53.0
    assert not any(k.startswith("system/gpu_") and "gpu_0" not in k for k in run.data.metrics)
    assert run.data.tags["system_metrics.gpus"] == "cuda:0=nvml:3 (GPU-333)"

    # No way to read GPUs: CPU and memory only, and the run says why.
    def broken():
        raise RuntimeError("NVML driver mismatch")

    monkeypatch.setattr(sm, "gpu_reader", broken)
    t = tracker(uri)
    t.start_system_metrics(interval=60.0, gpu=True)
    t.end()
    run = mlflow.MlflowClient(uri[0]).get_run(t.run_id)
    assert "NVML driver mismatch" in run.data.tags["system_metrics.gpus"]
    assert "system/cpu_utilization_percentage" in run.data.metrics


def test_a_sqlite_stores_artifacts_live_beside_its_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not where the database is
    db_dir = tmp_path / "store"
    db_dir.mkdir()
    client = mlflow.MlflowClient(f"sqlite:///{db_dir}/m.db")
    exp = client.get_experiment(get_or_create_experiment(client, "beside"))
    assert exp.artifact_location == (db_dir / "mlruns").as_uri()
    assert beside_database("http://127.0.0.1:5000") is None
    assert beside_database("sqlite:///m.db") == (tmp_path / "mlruns").as_uri()
