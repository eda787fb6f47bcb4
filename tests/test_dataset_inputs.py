import json

import pytest

from ttsr.config import TrainConfig
from ttsr.data import open_dataset_from_config
from ttsr.tracking.dataset_inputs import CONTEXT_TAG, dataset_inputs, describe

pytest.importorskip("mlflow")


def config(**changes) -> TrainConfig:
    return TrainConfig.from_dict({"size": 32, "fraction": 0.1, "seed": 0, **changes})


def test_describes_what_the_run_trains_and_validates_on():
    cfg = config(val_limit=2)
    train, val = describe(cfg, "train"), describe(cfg, "test")
    assert (train.name, train.context) == ("sample-train", "train")
    assert (val.name, val.context) == ("sample-test", "validation")
    assert train.profile["items"] == len(open_dataset_from_config(cfg, "train"))
    assert val.profile["items"] == min(2, len(open_dataset_from_config(cfg, "test")))
    assert train.profile["fraction"] == 0.1 and train.profile["ref_mode"] == "gt"
    assert train.profile["kind"] == "sample set" and train.source.endswith("prepared")
    assert describe(cfg, "train") == train  # the same data, the same digest


def test_digest_follows_the_items_and_how_they_become_inputs():
    base = describe(config(), "train").digest
    assert describe(config(fraction=0.2), "train").digest != base  # more items
    assert describe(config(ref_mode="other"), "train").digest != base
    assert describe(config(inpaint=True), "train").digest != base
    assert describe(config(lr=1e-3), "train").digest == base  # not about the data


def test_dataset_inputs_as_mlflow_entities():
    train, val = dataset_inputs(config())
    assert [t.key for t in train.tags] == [CONTEXT_TAG]
    assert (train.tags[0].value, val.tags[0].value) == ("train", "validation")
    assert train.dataset.source_type == "local"
    assert json.loads(train.dataset.source)["uri"].endswith("prepared")
    assert json.loads(val.dataset.profile)["split"] == "test"


def test_fraction_subsets_training_only_every_fraction_validates_on_the_same_images():
    """A dataset-fraction study compares like with like: one validation set for all."""
    from ttsr.train.evaluate import Evaluator

    small, full = config(fraction=0.125), config(fraction=1.0)
    assert len(open_dataset_from_config(small, "train")) < len(
        open_dataset_from_config(full, "train")
    )
    assert list(open_dataset_from_config(small, "test").keys) == list(
        open_dataset_from_config(full, "test").keys
    )
    assert describe(small, "test").digest == describe(full, "test").digest
    assert describe(small, "test").profile["fraction"] == 1.0
    other = dict(val_ref_modes=["other"])
    a, b = Evaluator(config(fraction=0.125, **other)), Evaluator(config(fraction=1.0, **other))
    assert {m: len(s) for m, s in a.datasets.items()} == {m: len(s) for m, s in b.datasets.items()}
    assert len(a.datasets["other"]) == len(open_dataset_from_config(full, "test"))
