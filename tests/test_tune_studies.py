"""experiments.yaml schema: every shipped study parses; bad files name study and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tune.studies import PROFILES, StudyError, choose_profile, load_all, load_study

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
