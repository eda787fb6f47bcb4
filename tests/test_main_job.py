"""The README's main job, `python tune/run.py --study loss-weights`, end to end on a real local
Ray and a SQLite MLflow store, at a fraction of the shipped demo's size: the shipped study with
fewer epochs and images (same warm start, repeats, start point, search and report). Checks what
a user finds afterwards: a learned model, an answer, and the MLflow store of issue 14 (training
kind, step images, dataset inputs, system metrics, a model per trial, a registered best).
Slow: one Ray cluster, 4 tiny trials after a tiny warm start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(REPO / "tune" / "run.py")]


def _smaller_main_job(tmp_path: Path) -> Path:
    doc = yaml.safe_load((REPO / "experiments.yaml").read_text())
    study = doc["studies"]["loss-weights"]
    demo = study["profiles"]["demo"]
    demo["pretrain"].update(epochs=3, val_limit=2)
    demo["repeats"] = 2  # 2 configurations x 2 seeds are enough to check what is logged
    demo["config"].update(epochs=1, fraction=0.15, val_limit=6, n_feats=8,
                          num_res_blocks="1+1+1+1")  # fmt: skip
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump({"studies": {"loss-weights": study}}))
    return path


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_main_job_learns_answers_and_fills_mlflow(tmp_path):
    temp_dir = tempfile.mkdtemp(prefix="rt_", dir="/tmp")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(CUDA_VISIBLE_DEVICES="", RAY_worker_niceness="0", TTSR_CACHE_DIR=str(tmp_path))
    args = ["--study", "loss-weights", "--experiments", str(_smaller_main_job(tmp_path))]
    args += ["--mlflow-uri", uri, "--storage", str(tmp_path / "results"), "--num-cpus", "2"]
    args += ["--no-dashboard", "--ray-temp-dir", temp_dir]
    out = subprocess.run(
        RUN + args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1400
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    answer = next(line for line in lines if line.startswith("answer: "))
    assert "Against reconstruction only" in answer
    assert "warm start: best val_psnr" in out.stdout
    assert any(line.startswith("kept model: models:/ttsr-loss-weights/1") for line in lines)
    assert "viewStateShareKey=" in out.stdout  # the link to the grouped comparison

    import optuna
    import pandas as pd
    from mlflow import MlflowClient

    from tune.reporting.formatting import short

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("loss-weights")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FINISHED" and parent.data.tags["role"] == "study"
    assert parent.data.tags["mlflow.note.content"].startswith(answer.removeprefix("answer: ")[:60])
    assert parent.data.tags["vgg_pretrained"] in ("true", "false")
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    warm = [r for r in children if r.data.tags.get("role") == "warm-start"]
    trials = [r for r in children if r.data.tags.get("role") == "trial"]
    assert len(warm) == 1 and len(trials) == 4 and len(children) == 5  # 2 configs x 2 seeds
    # the warm start is not a baseline lookalike: no searched params, its own config tag
    assert not {"per_w", "tpl_w", "adv_w"} & set(warm[0].data.params)
    assert warm[0].data.tags["config"] == "warm start"
    # runs a person can read and group: name = configuration · seed, tag config per config
    assert {r.data.params["seed"] for r in trials} == {"0", "1"}
    configs = {}
    for run in trials:
        p, tags = run.data.params, run.data.tags
        weights = {f"{k}={short(float(p[k]))}" for k in ("per_w", "tpl_w", "adv_w")}
        assert set(tags["config"].split(", ")) == weights, (tags, p)
        assert run.info.run_name == f"{tags['config']} · seed {p['seed']}"
        assert set(p) == {"per_w", "tpl_w", "adv_w", "seed"}  # what differs; all in config.json
        configs.setdefault(tags["config"], []).append(run)
    assert len(configs) == 2 and all(len(v) == 2 for v in configs.values())

    # one set of numbers: the MLflow run, trials.parquet and the Optuna study agree
    report_dir = next((tmp_path / "results").glob("loss-weights/*/report"))
    table = pd.read_parquet(report_dir / "trials.parquet").set_index("trial_id")
    groups = pd.read_parquet(report_dir / "groups.parquet").set_index("group")
    for run in trials:
        row = table.loc[run.data.tags["trial_id"]]
        for key in ("best_val_psnr", "best_val_perceptual", "best_val_ssim", "best_epoch"):
            assert run.data.metrics[key] == pytest.approx(row[key], abs=1e-9), key
        assert row["group"] == run.data.tags["config"]
    study = optuna.load_study(
        study_name=parent.info.run_name, storage=f"sqlite:///{tmp_path}/optuna.db"
    )
    assert [m.split(" ")[0] for m in study.metric_names] == ["best_val_psnr", "best_val_perceptual"]
    assert "Parameter importance" in study.user_attrs["read_me"]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 2
    for t in complete:
        group = groups.loc[t.user_attrs["mlflow_config_tag"]]
        assert t.values == pytest.approx(
            [group["best_val_psnr_mean"], group["best_val_perceptual_mean"]], abs=1e-9
        )
        assert t.user_attrs["mlflow_parent_run_id"] == parent.info.run_id

    for run in trials:
        run_id = run.info.run_id
        assert run.info.status == "FINISHED"
        # the warm start: every trial begins where it ended (epoch 0 is before training)
        assert "/pretrain-" in run.data.tags["init_checkpoint"]
        steps = sorted(m.step for m in client.get_metric_history(run_id, "val_psnr"))
        assert steps == [0, 1]
        assert {m.key for m in client.get_metric_history(run_id, "epoch")} == {"epoch"}
        # step-indexed sample images, a dataset input per split, system metrics, a model
        images = {a.path for a in client.list_artifacts(run_id, "images")}
        assert any("samples_test" in p for p in images), images
        assert "config.json" in {a.path for a in client.list_artifacts(run_id)}
        contexts = {
            t.value
            for d in client.get_run(run_id).inputs.dataset_inputs
            for t in d.tags
            if t.key == "mlflow.data.context"
        }
        assert contexts == {"train", "validation"}
        assert any(k.startswith("system/") for k in run.data.metrics), run.data.metrics
        assert client.search_logged_models([exp.experiment_id], filter_string=(
            f"source_run_id = '{run_id}'"
        )), run_id  # fmt: skip

    # the registry tells the truth: the best seed of the best configuration, linked, alias best
    version = client.get_model_version_by_alias("ttsr-loss-weights", "best")
    assert int(version.version) == 1
    front = groups[groups["pareto"]]
    best_group = front["best_val_psnr_mean"].idxmax()
    members = table[table["group"] == best_group]
    kept = members["best_val_psnr"].idxmax()
    assert version.run_id == members.loc[kept, "mlflow_run_id"]
    model_id = version.source.removeprefix("models:/")
    linked = json.loads(client.get_logged_model(model_id).tags["mlflow.modelVersions"])
    assert linked == [{"name": "ttsr-loss-weights", "version": 1}]
    assert answer.removeprefix("answer: ")[:60] in version.description
    # the report: bicubic, seeds, the answer, one HTML page with the kept trial's grids
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.html", "report/groups.parquet", "report/pareto.png"} <= report
    page = (report_dir / "report.html").read_text()
    assert "(before training)" in page and "(kept epoch)" in page
