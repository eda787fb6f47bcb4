"""The warm start of a study (`pretrain:`): its config, its cache key, its reuse."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tune.execution import pretrain, storage
from tune.study.studies import StudyError, load_all, load_study

SHIPPED = Path(__file__).resolve().parent.parent / "experiments.yaml"


def test_shipped_warm_starts_are_reconstruction_only_versions_of_the_study():
    lw = load_study(SHIPPED, "loss-weights", "demo")
    values = lw.pretrain
    assert values["per_w"] == values["tpl_w"] == values["adv_w"] == 0.0
    # the warm start's own schedule (its YAML block) replaces the trials' epochs and lr
    import yaml

    shipped = yaml.safe_load(SHIPPED.read_text())["studies"]["loss-weights"]["profiles"]["demo"]
    assert values["size"] == lw.config["size"]
    assert values["epochs"] == shipped["pretrain"]["epochs"] != lw.config["epochs"]
    assert values["lr"] == shipped["pretrain"]["lr"] != lw.config["lr"]
    ip = load_study(SHIPPED, "inpainting", "demo")
    assert ip.config["adv_w"] > 0 and ip.pretrain["adv_w"] == 0.0  # the study's own losses off
    assert ip.pretrain["inpaint"] is True  # ... but the same task
    assert load_study(SHIPPED, "dataset-fraction", "demo").pretrain is None


def _study_file(tmp_path, **demo):
    study = {
        "report": {"kind": "tradeoff"},
        "objectives": [
            {"metric": "val_psnr", "mode": "max"},
            {"metric": "val_perceptual", "mode": "min"},
        ],
        "config": {"size": 32},
        "profiles": {
            "seed": {"search": {"per_w": {"choice": [0.0, 0.1]}}},
            "demo": {"search": {"per_w": {"choice": [0.0, 0.1]}}, **demo},
        },
    }
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({"studies": {"s": study}}))
    return path


@pytest.mark.parametrize(
    ("demo", "field"),
    [
        ({"pretrain": {"epochs": 0}}, "profiles.demo.pretrain.epochs"),
        ({"pretrain": {"init_checkpoint": "x.pt"}}, "profiles.demo.pretrain.init_checkpoint"),
        ({"pretrain": {"sizee": 3}}, "profiles.demo.pretrain"),
        ({"start_points": [{"per_w": 0.5}]}, "profiles.demo.start_points[0].per_w"),
        ({"start_points": [{"tpl_w": 0.0}]}, "profiles.demo.start_points[0]"),
    ],
)
def test_bad_pretrain_or_start_points_name_the_field(tmp_path, demo, field):
    with pytest.raises(StudyError) as err:
        load_all(_study_file(tmp_path, **demo))
    assert f"study 's': {field}" in str(err.value) and "\n" not in str(err.value)


def test_digest_follows_what_is_trained_not_where():
    a = {"size": 32, "epochs": 3, "out_dir": "/a"}
    assert pretrain.digest(a) == pretrain.digest({**a, "out_dir": "/b", "extra": {"x": 1}})
    assert pretrain.digest(a) != pretrain.digest({**a, "epochs": 4})


def test_a_cached_warm_start_is_reused_without_training(tmp_path, capsys):
    study = load_study(SHIPPED, "loss-weights", "demo")
    root = str(tmp_path / "loss-weights")
    target = pretrain.target_dir(study, root)
    info = {
        "model": f"{target}/model.pt",
        "best_val_psnr": 26.4,
        "best_epoch": 24,
        "bicubic_psnr": 25.8,
        "seconds": 61.0,
    }
    storage.write_json(f"{target}/{pretrain.PRETRAIN_FILE}", info)
    warm = pretrain.warm_start(study, study_root=root, meta={}, cpus=1)  # no Ray: would fail
    assert warm.config["init_checkpoint"] == info["model"]
    assert {k: v for k, v in warm.config.items() if k != "init_checkpoint"} == study.config
    assert "reusing" in capsys.readouterr().out
    # a study without a warm start is returned as it is
    fraction = load_study(SHIPPED, "dataset-fraction", "demo")
    assert pretrain.warm_start(fraction, study_root=root, meta={}, cpus=1) is fraction
