import json
import pickle
import subprocess
import sys

import pytest

from ttsr import names
from ttsr.config import ConfigError, TrainConfig, parse_blocks


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


# --- strict types: what YAML/JSON give is accepted, nothing else ---------------------------------
def _error(values: dict) -> str:
    """The one-line message of the ConfigError that ``values`` raise."""
    with pytest.raises(ConfigError) as excinfo:
        TrainConfig.from_dict(values)
    message = str(excinfo.value)
    assert "\n" not in message and "pydantic" not in message and "http" not in message, message
    return message


def test_yaml_numbers_convert_to_the_field_type():
    config = TrainConfig.from_dict({"lr": 1, "size": 64.0, "budget_images": 80.0, "epochs": 2})
    assert config.lr == 1.0 and type(config.lr) is float
    assert config.size == 64 and type(config.size) is int
    assert config.budget_images == 80 and type(config.budget_images) is int
    config = TrainConfig.from_dict({"val_ref_modes": ["other", "gt-augmented"]})
    assert config.val_ref_modes == ("other", "gt-augmented")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"size": True}, "size: must be an integer (got True)"),
        ({"size": "160"}, "size: must be an integer (got '160')"),
        ({"epochs": 2.5}, "epochs: must be an integer (got 2.5)"),
        ({"val_limit": False}, "val_limit: must be an integer or null (got False)"),
        ({"per_w": True}, "per_w: must be a number (got True)"),
        ({"lr": "1e-4"}, "lr: must be a number (got '1e-4')"),
        ({"per_w": float("nan")}, "per_w: must be a finite number (got nan)"),
        ({"lr": float("inf")}, "lr: must be a finite number (got inf)"),
        ({"inpaint": 1}, "inpaint: must be true or false (got 1)"),
        ({"fused_optim": "no"}, "fused_optim: must be true or false (got 'no')"),
        ({"out_dir": 5}, "out_dir: must be a string (got 5)"),
        ({"data": 5}, "data: must be a string or null (got 5)"),
        ({"size": None}, "size: must not be null"),
        ({"early_stop_metric": None}, "early_stop_metric: must not be null"),
        ({"inpaint_box": "0,0,1,1"}, "inpaint_box: must be a list (got '0,0,1,1')"),
        ({"inpaint_box": [0, 0, 1]}, "inpaint_box: must be a list of 4 items (got [0, 0, 1])"),
        ({"inpaint_box": [0, 0, 1, 1, 1]}, "inpaint_box: must be a list of 4 items"),
        ({"inpaint_box": [0, True, 1, 1]}, "inpaint_box[1]: must be a number (got True)"),
        ({"val_ref_modes": "other"}, "val_ref_modes: must be a list (got 'other')"),
        ({"extra": ["a"]}, "extra: must be a mapping (got ['a'])"),
    ],
)
def test_wrong_types_are_one_line_errors(values, message):
    assert _error(values).startswith(message)


def test_none_is_accepted_only_by_optional_fields():
    optional = ("data", "val_limit", "vgg_weights", "search_chunk", "init_checkpoint", "patience")
    optional += ("budget_steps", "budget_images", "spike_factor", "saturation_rise")
    for name in optional:
        assert getattr(TrainConfig.from_dict({name: None}), name) is None
    for name in ("size", "lr", "ref_mode", "inpaint", "num_res_blocks", "fused_optim"):
        assert _error({name: None}) == f"{name}: must not be null"


def test_unknown_keys_are_listed_with_the_known_ones():
    message = _error({"sise": 160, "lrr": 1, "size": 64})
    known = "known keys: adv_w, amp, augment, batch_size"
    assert message.startswith(f"unknown key(s) lrr, sise; {known}")
    assert "budget_steps" in message and "val_ref_modes" in message
    with pytest.raises(ConfigError, match=r"^unknown key\(s\) sise;"):
        TrainConfig(sise=160)
    assert _error({1: 2}).startswith("unknown key(s) 1;")
    with pytest.raises(ConfigError, match="must be a mapping"):
        TrainConfig.from_dict([("size", 64)])


def test_bad_values_put_the_first_error_on_one_line():
    message = _error({"size": 30, "lr": -1, "per_w": "x"})
    assert message == "size: must be a multiple of 4 (got 30)"


# --- new fields ----------------------------------------------------------------------------------
def test_new_field_defaults():
    c = TrainConfig()
    assert (c.search_dtype, c.fused_optim, c.fast_kernels, c.checkpoint_activations) == (
        "fp32",
        True,
        True,
        False,
    )
    assert (c.init_checkpoint, c.val_ref_modes, c.early_stop_metric) == (None, (), "val_psnr")
    assert (c.budget_steps, c.budget_images, c.step_budget) == (None, None, None)
    assert (c.spike_factor, c.saturation_rise, c.log_every_steps) == (20.0, 0.05, 0)


@pytest.mark.parametrize(
    "values",
    [
        {"search_dtype": "bf16"},
        {"fused_optim": False, "fast_kernels": False, "checkpoint_activations": True},
        {"init_checkpoint": "runs/pretrained/model.pt"},
        {"val_ref_modes": ["other"], "early_stop_metric": "val_psnr_other"},
        {"ref_mode": "paired", "val_ref_modes": ["gt", "gt-augmented", "other"]},
        {"ref_mode": "other", "val_ref_modes": ["gt"], "early_stop_metric": "val_psnr_gt"},
        {"budget_steps": 10, "epochs": 10},
        {"budget_images": 37, "batch_size": 4, "epochs": 10},
        {"spike_factor": 1.5, "saturation_rise": 0.5},
        {"spike_factor": None, "saturation_rise": None},
        {"log_every_steps": 1},
        {"rec_w": 0, "per_w": 0.01},
        {"rec_w": 0, "adv_w": 0.01, "init_epochs": 0},
    ],
)
def test_good_new_values(values):
    config = TrainConfig.from_dict(values)
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"search_dtype": "fp16"}, "search_dtype: must be one of 'fp32' or 'bf16' (got 'fp16')"),
        ({"init_checkpoint": ""}, "init_checkpoint: must not be empty (got '')"),
        ({"val_ref_modes": ["paired"]}, "val_ref_modes[0]: must be one of 'gt', 'gt-augmented'"),
        ({"val_ref_modes": ["other", "nearest"]}, "val_ref_modes[1]: must be one of"),
        ({"val_ref_modes": ["gt"]}, "val_ref_modes: must not repeat ref_mode 'gt' (got ('gt',))"),
        ({"val_ref_modes": ["other", "other"]}, "val_ref_modes: lists a mode twice"),
        ({"early_stop_metric": "val_psnr_other"}, "early_stop_metric: must be val_psnr;"),
        (
            {"val_ref_modes": ["other"], "early_stop_metric": "val_ssim_other"},
            "early_stop_metric: must be val_psnr or val_psnr_other;",
        ),
        ({"budget_steps": 0}, "budget_steps: must be >= 1 or null (got 0)"),
        ({"budget_images": -8}, "budget_images: must be >= 1 or null (got -8)"),
        ({"budget_steps": 1.5}, "budget_steps: must be an integer or null (got 1.5)"),
        (
            {"budget_steps": 10, "budget_images": 80},
            "budget_images: cannot be combined with budget_steps",
        ),
        ({"budget_steps": 9}, "epochs: validation rounds must not exceed the step budget of 9"),
        (
            {"budget_images": 35, "batch_size": 4, "epochs": 10},  # ceil(35 / 4) = 9 steps
            "epochs: validation rounds must not exceed the step budget of 9 (got 10)",
        ),
        ({"spike_factor": 1}, "spike_factor: must be > 1 or null (got 1)"),
        ({"spike_factor": 0.5}, "spike_factor: must be > 1 or null"),
        ({"saturation_rise": 0}, "saturation_rise: must be > 0 or null (got 0)"),
        ({"saturation_rise": 1}, "saturation_rise: must be < 1 or null (got 1)"),
        ({"log_every_steps": -1}, "log_every_steps: must be >= 0 (got -1)"),
    ],
)
def test_bad_new_values_are_one_line_errors(values, message):
    assert _error(values).startswith(message)


def test_step_budget_counts_whole_batches():
    assert TrainConfig(budget_steps=12, epochs=3).step_budget == 12
    assert TrainConfig(budget_images=33, batch_size=4, epochs=3).step_budget == 9
    assert TrainConfig(budget_images=32, batch_size=4, epochs=3).step_budget == 8


# --- loss-weight rules (moved here from the training loop) ---------------------------------------
def test_all_zero_loss_weights_fail_validation():
    zero = {"rec_w": 0, "per_w": 0, "tpl_w": 0, "adv_w": 0}
    message = _error(zero)
    assert message.startswith("rec_w/per_w/tpl_w/adv_w: all loss weights are 0; nothing to train")
    assert message.endswith("(got (0.0, 0.0, 0.0, 0.0))")
    assert _error({"rec_w": 0}).startswith("rec_w/per_w/tpl_w/adv_w:")


def test_init_epochs_need_the_reconstruction_loss():
    assert TrainConfig(init_epochs=2, per_w=0.1).init_epochs == 2
    message = _error({"init_epochs": 2, "rec_w": 0, "per_w": 0.1})
    assert message == "init_epochs: reconstruction-only epochs need rec_w > 0 (got 2)"


def test_replace_checks_cross_field_rules():
    config = TrainConfig(val_ref_modes=("other",))
    assert config.replace(early_stop_metric="val_psnr_other").early_stop_metric == "val_psnr_other"
    with pytest.raises(ConfigError, match="^val_ref_modes: must not repeat ref_mode 'other'"):
        config.replace(ref_mode="other")


# --- the model's residual-block spec, parsed in one place ----------------------------------------
def test_parse_blocks():
    assert parse_blocks("16+16+8+4") == (16, 16, 8, 4)
    assert TrainConfig(num_res_blocks="1+2+3+4").res_blocks == (1, 2, 3, 4)
    for bad, why in [
        ("16+16+8", "must be four positive integers joined by '+'"),
        ("1+1+1+0", "must be four positive integers joined by '+'"),
        ("a+b+c+d", "must look like '16+16+8+4'"),
        ("1+1+1+-1", "must look like '16+16+8+4'"),
        ("16+16+8+", "must look like '16+16+8+4'"),
        ("1_6+1+1+1", "must look like '16+16+8+4'"),
    ]:
        with pytest.raises(ConfigError) as excinfo:
            parse_blocks(bad)
        assert str(excinfo.value) == f"num_res_blocks: {why} (got {bad!r})"
        assert _error({"num_res_blocks": bad}) == str(excinfo.value)


# --- the object ----------------------------------------------------------------------------------
def test_round_trip_through_json():
    config = TrainConfig(
        size=48,
        inpaint_box=(0.1, 0.2, 0.3, 0.4),
        val_ref_modes=("other", "gt-augmented"),
        early_stop_metric="val_psnr_other",
        budget_images=100,
        epochs=4,
        spike_factor=None,
        extra={"study": "s"},
    )
    values = config.to_dict()
    assert list(values) == list(TrainConfig.field_names())
    assert TrainConfig.from_dict(values) == config
    assert TrainConfig.from_dict(json.loads(json.dumps(values))) == config  # tuples -> lists


def test_field_names_are_the_keys_from_dict_accepts():
    names_ = TrainConfig.field_names()
    assert names_[:2] == ("data", "size") and "extra" in names_ and len(set(names_)) == len(names_)
    for new in ("search_dtype", "fused_optim", "fast_kernels", "checkpoint_activations"):
        assert new in names_
    for new in ("init_checkpoint", "val_ref_modes", "early_stop_metric", "budget_steps"):
        assert new in names_
    assert set(TrainConfig().to_dict()) == set(names_)


def test_config_is_immutable_and_compares_without_extra():
    config = TrainConfig()
    with pytest.raises(ValueError):
        config.size = 64
    assert config.size == 160
    tagged = TrainConfig(extra={"trial_id": "t1"})
    assert tagged == config and hash(tagged) == hash(config)
    assert TrainConfig(size=64) != config
    assert pickle.loads(pickle.dumps(tagged)).extra == {"trial_id": "t1"}  # Ray ships configs


def test_metric_names_for_extra_reference_modes():
    assert names.for_ref_mode(names.VAL_PSNR, "other") == "val_psnr_other"
    assert names.for_ref_mode(names.VAL_SSIM, "gt-augmented") == "val_ssim_gt-augmented"
    config = TrainConfig(val_ref_modes=("other",))
    assert config.early_stop_metrics() == ("val_psnr", "val_psnr_other")


def test_importing_the_config_does_not_import_torch():
    code = "import sys, ttsr.config; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- augmentation switch and stopper fields (issue 20) ------------------------------------------
def test_augment_and_stopper_defaults():
    c = TrainConfig()
    assert c.augment is True  # the reference recipe's flips/rotations, as before the switch
    assert (c.min_delta, c.divergence_floor_db, c.divergence_epochs) == (0.05, 3.0, 2)
    off = TrainConfig.from_dict({"augment": False, "min_delta": 0.1, "divergence_epochs": 3})
    assert TrainConfig.from_dict(off.to_dict()) == off and off != c


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"augment": "no"}, "augment: must be true or false (got 'no')"),
        ({"augment": 0}, "augment: must be true or false (got 0)"),
        ({"augment": None}, "augment: must not be null"),
        ({"min_delta": -0.1}, "min_delta: must be >= 0 (got -0.1)"),
        ({"divergence_epochs": 0}, "divergence_epochs: must be >= 1 (got 0)"),
        ({"divergence_epochs": 1.5}, "divergence_epochs: must be an integer (got 1.5)"),
        ({"divergence_floor_db": 0}, "divergence_floor_db: must be > 0 (got 0)"),
    ],
)
def test_bad_augment_and_stopper_values_are_one_line_errors(values, message):
    assert _error(values) == message


def test_augment_flag_of_the_training_cli():
    from ttsr.train.cli import build_parser, config_from_args

    def config(*argv):
        return config_from_args(build_parser().parse_args(list(argv)))

    assert config().augment is True
    assert config("--no-augment").augment is False
    assert config("--augment").augment is True


def test_augment_switch_reaches_the_training_split_only(monkeypatch):
    from ttsr.data import source

    seen = {}
    monkeypatch.setattr(source, "open_dataset", lambda data, **kw: seen.update({kw["split"]: kw}))
    for augment in (True, False):
        config = TrainConfig(size=32, fraction=0.03, augment=augment)
        source.open_dataset_from_config(config, "train")
        source.open_dataset_from_config(config, "test")
        assert seen["train"]["augment"] is augment and seen["test"]["augment"] is False
