"""Tuner parts from a study (no Ray cluster started): search space, searcher, scheduler, configs;
and the trainable's pure helpers."""

from __future__ import annotations

from pathlib import Path

from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from tune.execution.trainable import pick_device, trial_values
from tune.execution.tuner import param_space, run_config, scheduler, searcher
from tune.study.studies import load_study

SHIPPED = Path(__file__).resolve().parent.parent / "experiments.yaml"


def test_loss_weights_is_optuna_multi_objective_without_asha():
    study = load_study(SHIPPED, "loss-weights", "demo")
    space = param_space(study)
    assert set(space) == {"per_w", "tpl_w", "adv_w"}
    assert 0.0 in space["per_w"].categories
    alg = searcher(study, seed=0)
    assert isinstance(alg, ConcurrencyLimiter) and alg.max_concurrent == study.max_concurrent
    # Optuna is told the kept epoch's values (the report's and the MLflow run's numbers)
    assert alg.searcher.metric == ["best_val_psnr", "best_val_perceptual"]
    assert alg.searcher.mode == ["max", "min"]
    assert isinstance(scheduler(study), FIFOScheduler)


def test_grid_study_uses_grid_search_and_default_searcher():
    study = load_study(SHIPPED, "train-time", "seed")
    space = param_space(study)
    assert space["case"] == tune.grid_search([dict(c) for c in study.cases])
    assert searcher(study, seed=0) is None
    assert load_study(SHIPPED, "dataset-fraction", "demo").is_grid
    assert param_space(load_study(SHIPPED, "dataset-fraction", "demo"))["fraction"] == (
        tune.grid_search([0.125, 0.25, 0.5, 1.0])
    )


def test_asha_and_checkpoint_and_failure_config(tmp_path):
    from dataclasses import replace

    study = replace(load_study(SHIPPED, "ref-is-gt", "demo"), scheduler="asha")
    sched = scheduler(study)
    assert isinstance(sched, AsyncHyperBandScheduler)
    assert sched._time_attr == "epoch" and sched._metric == "val_psnr"
    rc = run_config(study, storage=str(tmp_path), name="x")
    assert rc.checkpoint_config.num_to_keep == 2
    # Tune keeps the checkpoints the loop's early stopping would keep: by the watched metric.
    assert rc.checkpoint_config.checkpoint_score_attribute == "val_psnr_other"
    assert study.config["early_stop_metric"] == "val_psnr_other"
    assert rc.failure_config.max_failures == 2


def test_trial_values_merge_order():
    base = {"size": 32, "batch_size": 8, "per_w": 0.0}
    values = trial_values(base, {"case": {"size": 64, "batch_size": 2}, "per_w": 0.01})
    assert values == {"size": 64, "batch_size": 2, "per_w": 0.01}
    assert base["size"] == 32  # not mutated


def test_pick_device_records_fallback():
    assert pick_device("auto", [0], cuda_available=True) == ("cuda", None)
    assert pick_device("auto", [], cuda_available=True) == ("cpu", None)
    device, note = pick_device("cuda", [], cuda_available=True)
    assert device == "cpu" and "no GPU" in note
    # a node that declares a GPU CUDA can't see (ray start --num-gpus=1 on a CPU box)
    device, note = pick_device("auto", [0], cuda_available=False)
    assert device == "cpu" and "CUDA is not available" in note


def test_trial_naming_names_the_configuration_and_the_seed():
    from tune.execution.trainable import trial_naming

    meta = {"study": "loss-weights", "varied": ["per_w", "tpl_w", "adv_w"], "repeats": 2}
    values = {"per_w": 30.0, "tpl_w": 3.0, "adv_w": 0.05, "seed": 1, "lr": 1e-4}
    params, config, name = trial_naming(values, meta)
    assert params == ["per_w", "tpl_w", "adv_w", "seed"]
    assert config == "per_w=30, tpl_w=3, adv_w=0.05"
    assert name == "per_w=30, tpl_w=3, adv_w=0.05 · seed 1"
    # the same configuration with another seed: the same config tag, another name
    assert trial_naming({**values, "seed": 0}, meta)[1:] == (config, f"{config} · seed 0")
    # a grid over cases names the size; a study that varies nothing is named after itself
    grid = {"study": "resolution", "varied": ["batch_size", "size"], "repeats": 1}
    assert trial_naming({"size": 64, "batch_size": 2, "seed": 0}, grid) == (
        ["batch_size", "size"], "batch_size=2, size=64", "batch_size=2, size=64",
    )  # fmt: skip
    fixed = {"study": "ref-is-gt", "varied": [], "repeats": 2}
    assert trial_naming({"seed": 3}, fixed) == (["seed"], "all trials", "ref-is-gt · seed 3")
