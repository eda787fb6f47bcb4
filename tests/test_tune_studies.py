"""experiments.yaml schema: every shipped study parses; bad files name study and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tune.study import studies as studies_module
from tune.study.studies import (
    PROFILES,
    StudyError,
    StudyFile,
    choose_profile,
    load_all,
    load_study,
    parse_set,
)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "experiments.yaml"
EXPECTED = {
    "train-time",
    "ref-is-gt",
    "loss-weights",
    "dataset-fraction",
    "resolution",
    "inpainting",
}


def test_every_shipped_study_parses_in_both_profiles():
    studies = load_all(SHIPPED)
    assert set(studies) == EXPECTED
    for name, by_profile in studies.items():
        assert set(by_profile) == set(PROFILES)
        demo, seed = by_profile["demo"], by_profile["seed"]
        assert demo.config["device"] == "cpu", name
        assert demo.gpus_per_trial == 0, name
        assert seed.gpus_per_trial >= 1, name
        assert seed.data, name
        assert demo.num_trials() >= 1


def test_shipped_studies_match_the_seed_document():
    s = load_all(SHIPPED)
    tt = s["train-time"]["seed"]
    assert [(c["size"], c["batch_size"]) for c in tt.cases] == [
        (160, 8),
        (256, 4),
        (384, 1),
        (512, 1),
    ]
    assert tt.config["epochs"] == 1 and tt.config["per_w"] == tt.config["adv_w"] == 0
    gt = s["ref-is-gt"]["seed"].config
    assert (gt["size"], gt["fraction"], gt["batch_size"], gt["epochs"]) == (160, 0.5, 8, 23)
    assert gt["ref_mode"] == "gt" and gt["patience"] >= 1
    lw = s["loss-weights"]["seed"]
    assert lw.multi_objective and lw.scheduler == "fifo" and not lw.is_grid
    assert all(0.0 in lw.search[k].values for k in ("per_w", "tpl_w", "adv_w"))
    assert lw.config["rec_w"] == 1.0
    assert s["dataset-fraction"]["seed"].search["fraction"].values == (0.125, 0.25, 0.5, 1.0)
    assert [c["size"] for c in s["resolution"]["seed"].cases] == [160, 256, 384, 512]
    ip = s["inpainting"]["seed"].config
    assert ip["inpaint"] and (ip["rec_w"], ip["per_w"], ip["tpl_w"], ip["adv_w"]) == (
        1.0,
        0.01,
        0.01,
        0.01,
    )
    assert s["loss-weights"]["demo"].num_trials() >= 4


def test_shipped_studies_say_what_their_report_answers():
    s = load_all(SHIPPED)
    kinds = {name: (by["seed"].report_kind, by["seed"].report_param) for name, by in s.items()}
    assert kinds == {
        "train-time": ("speed", "size"),
        "ref-is-gt": ("reference", None),
        "loss-weights": ("tradeoff", None),
        "dataset-fraction": ("scaling", "fraction"),
        "resolution": ("scaling", "size"),
        "inpainting": ("divergence", None),
    }
    for by_profile in s.values():  # the same answer in both profiles
        assert by_profile["demo"].report_kind == by_profile["seed"].report_kind


def _write(tmp_path: Path, study: dict, name: str = "s") -> Path:
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump({"studies": {name: study}}))
    return path


def _good() -> dict:
    return {
        "objectives": [{"metric": "val_psnr", "mode": "max"}],
        "config": {"rec_w": 1.0},
        "search": {"per_w": {"choice": [0.0, 0.01]}},
        "profiles": {"seed": {"data": "data/x", "gpus_per_trial": 1}, "demo": {"num_samples": 2}},
    }


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s["search"].update(per_w={"choice": [-1.0]}), "search.per_w"),
        (lambda s: s["search"].update(per_w={"loguniform": [0, 1]}), "search.per_w.loguniform"),
        (lambda s: s["search"].update(per_w={"uniform": [1, 0.5]}), "search.per_w.uniform"),
        (lambda s: s["search"].update(per_w={"random": [1]}), "search.per_w"),
        (lambda s: s["search"].update(perw={"choice": [0.1]}), "search.perw"),
        (lambda s: s["config"].update(size=30), "config.size"),
        (lambda s: s["config"].update(rec_weight=1), "config"),
        (lambda s: s["config"].update(batch_size="8"), "config.batch_size"),
        (lambda s: s.update(bogus=1), "bogus"),
        (lambda s: s["profiles"].pop("demo"), "profiles"),
        (lambda s: s["profiles"]["demo"].update(num_samples=0), "profiles.demo.num_samples"),
        (lambda s: s["profiles"]["demo"].update(gpus=1), "profiles.demo.gpus"),
        (
            lambda s: s["profiles"]["seed"].update(config={"n_feats": 3}),
            "profiles.seed.config.n_feats",
        ),
        (
            lambda s: s.update(objectives=[{"metric": "psnr", "mode": "max"}]),
            "objectives[0].metric",
        ),
        (
            lambda s: s.update(
                objectives=[
                    {"metric": "val_psnr", "mode": "max"},
                    {"metric": "val_perceptual", "mode": "min"},
                ],
                scheduler="asha",
            ),
            "scheduler",
        ),
        (lambda s: s["search"].update(fraction={"grid": [0.5, 1.0]}), "search"),
        (lambda s: s.update(cases=[{"size": 31}]), "cases[0].size"),
        (lambda s: s.update(repeats=0), "repeats"),
        (lambda s: s["profiles"]["demo"].update(repeats="2"), "profiles.demo.repeats"),
        (lambda s: s.update(report={"kind": "pareto"}), "report.kind"),
        (lambda s: s.update(report={"kind": "tradeoff", "extra": 1}), "report.extra"),
        (lambda s: s.update(report={"kind": "scaling"}), "report.param"),
        (lambda s: s.update(report={"kind": "scaling", "param": "size"}), "report.param"),
        (lambda s: s.update(report={"kind": "divergence", "param": "per_w"}), "report.param"),
        (lambda s: s["search"].update(per_w={"choice": [0.0, 0.0]}), "search.per_w.choice"),
        (lambda s: s["search"].update(per_w={"choice": [0.1], "grid": [0.1]}), "search.per_w"),
        (lambda s: s["profiles"]["seed"].update(cpus_per_trial=0), "profiles.seed.cpus_per_trial"),
        (lambda s: s["profiles"].update(other={}), "profiles.other"),
        (lambda s: s.update(objectives=[]), "objectives"),
    ],
)
def test_bad_study_names_study_and_field(tmp_path, mutate, field):
    study = _good()
    mutate(study)
    path = _write(tmp_path, study, name="loss-weights")
    with pytest.raises(StudyError) as err:
        load_all(path)
    message = str(err.value)
    assert message.startswith(f"experiments.yaml: study 'loss-weights': {field}"), message
    assert "\n" not in message


def test_good_study_resolves_and_profile_config_merges(tmp_path):
    study = _good()
    study["profiles"]["demo"]["config"] = {"size": 32, "n_feats": 8}
    path = _write(tmp_path, study)
    demo = load_study(path, "s", "demo")
    assert demo.config == {"rec_w": 1.0, "size": 32, "n_feats": 8}
    assert demo.num_samples == 2 and not demo.is_grid
    assert load_study(path, "s", "seed").gpus_per_trial == 1.0


def test_bad_yaml_and_unknown_study(tmp_path):
    path = tmp_path / "experiments.yaml"
    path.write_text("studies: {a: [1, 2\n")
    with pytest.raises(StudyError, match="not valid YAML"):
        load_all(path)
    good = _write(tmp_path, _good(), name="real")
    with pytest.raises(StudyError, match="unknown study 'fake'; known: real"):
        load_study(good, "fake", "demo")


def test_grid_study_enumerates_cases_and_grid_dims(tmp_path):
    study = _good()
    study["search"] = {"fraction": {"grid": [0.5, 1.0]}}
    study["cases"] = [{"size": 32, "batch_size": 2}, {"size": 48, "batch_size": 1}]
    s = load_study(_write(tmp_path, study), "s", "demo")
    assert s.is_grid and s.num_trials() == 2 * 2 * 2  # num_samples repeats the grid
    points = s.trial_configs()
    assert {(p["size"], p["fraction"]) for p in points} == {
        (32, 0.5),
        (32, 1.0),
        (48, 0.5),
        (48, 1.0),
    }


def test_profile_rule(tmp_path):
    assert choose_profile(requested="demo", data="x", seed_data=None, cluster_gpus=8)[0] == "demo"
    assert choose_profile(requested=None, data="x", seed_data=None, cluster_gpus=2)[0] == "seed"
    profile, why = choose_profile(requested=None, data="x", seed_data=None, cluster_gpus=0)
    assert profile == "demo" and "no GPUs" in why
    missing = str(tmp_path / "nope")
    assert choose_profile(requested=None, data=None, seed_data=missing, cluster_gpus=4)[0] == "demo"
    assert choose_profile(requested=None, data=None, seed_data=str(tmp_path), cluster_gpus=4)[
        0
    ] == ("seed")


def test_repeats_multiply_the_trials_and_report_param_is_a_varied_key(tmp_path):
    study = _good()
    study["repeats"] = 3
    study["report"] = {"kind": "scaling", "param": "per_w"}
    study["profiles"]["seed"]["repeats"] = 2
    path = _write(tmp_path, study)
    demo, seed = load_study(path, "s", "demo"), load_study(path, "s", "seed")
    assert (demo.repeats, demo.num_trials()) == (3, 2 * 3)  # num_samples 2, 3 seeds each
    assert (seed.repeats, seed.num_trials()) == (2, 1 * 2)
    assert (demo.report_kind, demo.report_param) == ("scaling", "per_w")
    grid = _good()
    grid["search"] = {"fraction": {"grid": [0.5, 1.0]}}
    grid["repeats"] = 2
    assert load_study(_write(tmp_path, grid), "s", "demo").num_trials() == 2 * 2 * 2


def test_overrides_apply_and_are_validated_like_the_file(tmp_path):
    path = _write(tmp_path, _good())
    s = load_study(path, "s", "demo", overrides={"lr": 3e-4, "epochs": 2, "repeats": 2})
    assert s.config == {"rec_w": 1.0, "lr": 3e-4, "epochs": 2}
    assert s.repeats == 2 and s.num_samples == 2  # the profile's num_samples stays
    s = load_study(path, "s", "seed", overrides={"num_samples": 5, "gpus_per_trial": 0.5})
    assert (s.num_samples, s.gpus_per_trial) == (5, 0.5)
    assert load_study(path, "s", "demo", overrides={"scheduler": "fifo"}).scheduler == "fifo"
    bad = {
        "lrr": "--set lrr: unknown key (did you mean lr?)",
        "size": "--set size: must be a multiple of 4 (got 30)",
        "num_samples": "--set num_samples: must be an integer >= 1 (got 0)",
        "scheduler": "--set scheduler: must be 'asha' or 'fifo' (got 'x')",
        "per_w": "--set per_w: the study varies this key",
        "data": "--set data: set the data path with --data",
    }
    values = {"lrr": 1, "size": 30, "num_samples": 0, "scheduler": "x", "per_w": 0.1, "data": "x"}
    for key, expect in bad.items():
        with pytest.raises(StudyError) as err:
            load_study(path, "s", "demo", overrides={key: values[key]})
        message = str(err.value)
        assert message.startswith(f"experiments.yaml: study 's': {expect}"), message
        assert "\n" not in message
    studies = StudyFile.load(path)
    with pytest.raises(StudyError, match="study 's': --max-epochs: "):
        studies.resolve("s", overrides={"epochs": 0}, labels={"epochs": "--max-epochs"})


def test_parse_set():
    assert parse_set("lr=1e-4") == ("lr", 1e-4)
    assert parse_set("val_ref_modes=[other]") == ("val_ref_modes", ["other"])
    assert parse_set("patience=null") == ("patience", None)
    assert parse_set("num_res_blocks=2+2+1+1") == ("num_res_blocks", "2+2+1+1")
    for text in ("lr", "=3", "a b=1", "lr=[1"):
        with pytest.raises(StudyError, match=r"^--set "):
            parse_set(text)


def test_study_file_parses_the_yaml_once(monkeypatch):
    calls = []
    real = studies_module._read_studies
    monkeypatch.setattr(studies_module, "_read_studies", lambda p: calls.append(p) or real(p))
    studies = StudyFile.load(SHIPPED)
    assert set(studies) == EXPECTED
    studies.all()
    studies.resolve("loss-weights", overrides={"lr": 1e-3})
    assert len(calls) == 1
