import pytest

from ttsr.config import ConfigError, TrainConfig


def test_defaults_match_the_reference():
    config = TrainConfig()
    assert (config.rec_w, config.per_w, config.tpl_w, config.adv_w) == (1.0, 0.0, 0.0, 0.0)
    assert (config.lr, config.lr_lte, config.lr_d) == (1e-4, 1e-5, 1e-4)
    assert config.res_blocks == (16, 16, 8, 4)
    assert config.n_feats == 64


def test_from_dict_accepts_yaml_like_values():
    config = TrainConfig.from_dict(
        {"size": 64, "per_w": 0, "inpaint_box": [0.1, 0.1, 0.5, 0.5], "patience": None}
    )
    assert config.per_w == 0.0 and isinstance(config.per_w, float)
    assert config.inpaint_box == (0.1, 0.1, 0.5, 0.5)
    assert config.patience is None


def test_round_trip_through_dict():
    config = TrainConfig(size=48, tpl_w=0.01, num_res_blocks="1+1+1+1")
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"sise": 160}, "sise"),
        ({"size": 162}, "size"),
        ({"size": "160"}, "size"),
        ({"fraction": 0}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
        ({"lr": -1e-4}, "lr"),
        ({"per_w": float("nan")}, "per_w"),
        ({"ref_mode": "nearest"}, "ref_mode"),
        ({"num_res_blocks": "16+16+8"}, "num_res_blocks"),
        ({"num_res_blocks": "a+b+c+d"}, "num_res_blocks"),
        ({"batch_size": 0}, "batch_size"),
        ({"inpaint": "yes"}, "inpaint"),
        ({"inpaint_box": [0.8, 0.5, 0.5, 0.8]}, "inpaint_box"),
        ({"epochs": 2.5}, "epochs"),
        ({"size": None}, "size"),
    ],
)
def test_bad_values_name_the_field(values, field):
    with pytest.raises(ConfigError) as excinfo:
        TrainConfig.from_dict(values)
    assert field in str(excinfo.value).split(":")[0]


def test_replace_validates():
    config = TrainConfig()
    assert config.replace(size=64).size == 64
    with pytest.raises(ConfigError, match="size"):
        config.replace(size=63)
