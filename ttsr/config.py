"""The typed training configuration: one flat pydantic model, validated in one place.

Flat on purpose: every field is one MLflow param and one possible Tune search dimension, and a
typo in a key is an error (unknown keys are rejected) instead of a loss that silently stays off.

Types are strict in the way YAML, JSON and Tune values need: ints are accepted for floats and
integral floats (``8.0``) for ints, lists for tuples; a bool is never a number, a string never a
number, and ``null`` only fits the optional fields. Every error is one ``ConfigError`` line,
``<field>: <why> (got <value>)``, so that tune/study/studies.py can prefix the file/study path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from ttsr import names
from ttsr.errors import UsageError

REF_MODES = ("gt", "gt-augmented", "other", "paired")
# Extra validation modes: "paired" needs the data's own pairs, so it is only ever a run's ref_mode.
VAL_REF_MODES = ("gt", "gt-augmented", "other")
CRITIC_STRIDE = 32  # the critic halves the image five times; its FC is sized to the crop
LOSS_WEIGHTS = ("rec_w", "per_w", "tpl_w", "adv_w")
# Early stopping (ttsr.train.early_stopping): an epoch must beat the best by more than this to count
# as an improvement; a plateau's epoch-to-epoch wiggles (0.02 dB on the demos' 22 validation
# photos) are below it.
DEFAULT_MIN_DELTA_DB = 0.05
# The PSNR floor fires when the watched PSNR stays more than divergence_floor_db below its best
# for this many validations in a row (a one-epoch dip that recovers is no divergence).
DEFAULT_DIVERGENCE_EPOCHS = 2


class ConfigError(UsageError, ValueError):
    """A configuration value is invalid; the message names the field."""


def parse_blocks(text: str) -> tuple[int, int, int, int]:
    """The reference's residual-block spec "16+16+8+4" (SFE, x1, x2, x4 stages) as four ints."""
    if not isinstance(text, str):
        raise ConfigError(f"num_res_blocks: must be a string like '16+16+8+4' (got {text!r})")
    parts = text.split("+")
    if not all(part.isascii() and part.isdigit() for part in parts):
        raise ConfigError(f"num_res_blocks: must look like '16+16+8+4' (got {text!r})")
    blocks = tuple(int(part) for part in parts)
    if len(blocks) != 4 or min(blocks) < 1:
        raise ConfigError(
            f"num_res_blocks: must be four positive integers joined by '+' (got {text!r})"
        )
    a, b, c, d = blocks
    return a, b, c, d


def _integral_float_to_int(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# The field types: strict, with the two conversions YAML/JSON values need (see the docstring).
Int = Annotated[int, BeforeValidator(_integral_float_to_int), Strict()]
Float = Annotated[float, Strict()]  # strict floats still take ints (never bools)
Box = tuple[Float, Float, Float, Float]


class TrainConfig(BaseModel):
    """Everything one training run needs. Frozen: change a value with ``replace`` (which
    validates again); an invalid value raises ``ConfigError``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    # --- data -------------------------------------------------------------------------------
    data: StrictStr | None = None  # prepared shard dir, CUFED-style paired dir, None = built-in
    size: Int = Field(160, gt=0, multiple_of=4)  # HR / reference side in pixels; LR is size // 4
    batch_size: Int = Field(8, ge=1)
    fraction: Float = Field(1.0, gt=0, le=1)  # nested deterministic subset of each split
    ref_mode: Literal[REF_MODES] = "gt"
    # the reference recipe's random flips and 90-degree rotations of the training items (the
    # test split is never augmented); off: the model sees the same crops every epoch
    augment: StrictBool = True
    val_limit: Int | None = Field(None, ge=1)  # validation images per epoch (None = whole split)
    # DataLoader workers; None = auto: 0 on CPU, on CUDA the trial's CPUs - 1 (ttsr.data.loading)
    num_workers: Int | None = Field(None, ge=0)
    # inpainting (seed Exp2-3/2-4): a box of the reference is blurred, LR comes from it
    inpaint: StrictBool = False
    inpaint_box: Box = (0.5, 0.5, 0.8, 0.8)  # x0, y0, x1, y1
    inpaint_blur: Float = Field(5.0, ge=0)  # Pillow GaussianBlur radius
    inpaint_random: StrictBool = False  # random box per sample (deterministic on the test split)

    # --- model ------------------------------------------------------------------------------
    n_feats: Int = Field(64, ge=2, multiple_of=2)  # MergeTail halves the width
    num_res_blocks: StrictStr = "16+16+8+4"
    res_scale: Float = 1.0
    vgg_weights: StrictStr | None = None  # torchvision VGG19 ImageNet weights (else cache/env)
    # reference positions per search chunk: None = auto, 0 = the reference's dense search
    search_chunk: Int | None = Field(None, ge=0)
    init_checkpoint: StrictStr | None = Field(None, min_length=1)  # start from these weights

    # --- losses -----------------------------------------------------------------------------
    rec_w: Float = Field(1.0, ge=0)
    per_w: Float = Field(0.0, ge=0)
    tpl_w: Float = Field(0.0, ge=0)
    adv_w: Float = Field(0.0, ge=0)
    tpl_loss: Literal["l2", "l1"] = "l2"
    tpl_use_s: StrictBool = False  # weight the transferal perceptual loss by sigmoid(S)
    gan_k: Int = Field(2, ge=1)  # discriminator steps per generator step
    gp_weight: Float = Field(10.0, ge=0)
    init_epochs: Int = Field(0, ge=0)  # reconstruction-only epochs before the other losses join

    # --- optimisation -----------------------------------------------------------------------
    epochs: Int = Field(10, ge=1)  # maximum epochs; with a budget: validation rounds
    budget_steps: Int | None = Field(None, ge=1)  # exactly this many optimiser steps
    budget_images: Int | None = Field(None, ge=1)  # ... or ceil(images / batch_size) steps
    lr: Float = Field(1e-4, gt=0)  # MainNet
    lr_lte: Float = Field(1e-5, gt=0)
    lr_d: Float = Field(1e-4, gt=0)
    beta1: Float = Field(0.9, ge=0, lt=1)
    beta2: Float = Field(0.999, ge=0, lt=1)
    eps: Float = Field(1e-8, gt=0)
    lr_decay_epochs: Int = 999  # step decay period (the reference's never fires)
    lr_gamma: Float = 0.5

    # --- validation, early stopping, divergence ---------------------------------------------
    val_ref_modes: tuple[Literal[VAL_REF_MODES], ...] = ()  # validated besides ref_mode
    early_stop_metric: StrictStr = names.VAL_PSNR  # or val_psnr_<mode> of a val_ref_modes mode
    patience: Int | None = Field(3, ge=1)  # epochs without improvement > min_delta (None = off)
    # which epoch a run keeps (its best checkpoint, its best_<metric>): the best one on
    # early_stop_metric, or the last one (a fine-tune judged on several objectives, where
    # choosing by PSNR alone would keep the warm start for any weighting that trades PSNR)
    keep: Literal["best", "last"] = "best"
    min_delta: Float = Field(DEFAULT_MIN_DELTA_DB, ge=0)  # dB an improvement must exceed
    # diverged when the metric stays this far below its best for divergence_epochs validations
    # in a row, or falls this far below where the run started (epoch 0)
    divergence_floor_db: Float = Field(3.0, gt=0)
    divergence_epochs: Int = Field(DEFAULT_DIVERGENCE_EPOCHS, ge=1)
    spike_factor: Float | None = Field(20.0, gt=1)  # loss > this x running median (None = off)
    saturation_rise: Float | None = Field(0.05, gt=0, lt=1)  # white-pixel share rise (None = off)

    # --- runtime (CUDA-only knobs are ignored on the CPU) -----------------------------------
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # auto = bf16 on CUDA, fp32 on CPU
    search_dtype: Literal["fp32", "bf16"] = "fp32"  # dtype of the relevance-search matmuls
    # as ttsr.search.SEARCH_METHODS; auto: fused kernel on CUDA, else chunked
    search_method: Literal["auto", "chunked", "dense", "fused"] = "auto"
    channels_last: StrictBool = True  # CUDA only
    compile: StrictBool = False  # torch.compile MainNet and LTE in place
    fused_optim: StrictBool = True  # fused Adam kernels (CUDA and CPU)
    # faster kernels, same computation: cuDNN autotune + TF32 matmuls on CUDA; no multiply by
    # res_scale 1, and bicubic as convolutions on the CPU (TTSR.use_fast_kernels)
    fast_kernels: StrictBool = True
    checkpoint_activations: StrictBool = False  # activation checkpointing of MainNet stages
    seed: Int = 0  # weights, data order, augmentation, critic: what repeats vary
    data_seed: Int = 0  # which images: fraction subsets and 'other' pairs (fixed across repeats)
    out_dir: StrictStr = "runs/ttsr"
    sample_every: Int = Field(1, ge=0)  # write sample grids every N epochs (0 = never)
    num_samples_grid: Int = 4
    log_every_steps: Int = Field(0, ge=0)  # host reads of the loss every N steps (0 = per epoch)

    extra: dict[str, Any] = Field(default_factory=dict)  # free-form tags; not compared

    # ---------------------------------------------------------------------------------------
    def __init__(self, **values: Any) -> None:
        _reject_unknown(values)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_one_line(exc, values)) from None

    @field_validator("num_res_blocks")
    @classmethod
    def _blocks(cls, text: str) -> str:
        parse_blocks(text)
        return text

    @model_validator(mode="after")
    def _cross_field_rules(self) -> TrainConfig:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"{name}: {why} (got {getattr(self, name)!r})")

        x0, y0, x1, y1 = self.inpaint_box
        if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            raise bad("inpaint_box", "must be x0, y0, x1, y1 fractions with 0 <= x0 < x1 <= 1")
        weights = tuple(getattr(self, name) for name in LOSS_WEIGHTS)
        if not any(weights):
            fields = "/".join(LOSS_WEIGHTS)
            raise ConfigError(f"{fields}: all loss weights are 0; nothing to train (got {weights})")
        if self.init_epochs > 0 and self.rec_w == 0:
            raise bad("init_epochs", "reconstruction-only epochs need rec_w > 0")
        if self.ref_mode in self.val_ref_modes:
            raise bad("val_ref_modes", f"must not repeat ref_mode {self.ref_mode!r}")
        if len(set(self.val_ref_modes)) != len(self.val_ref_modes):
            raise bad("val_ref_modes", "lists a mode twice")
        watchable = self.early_stop_metrics()
        if self.early_stop_metric not in watchable:
            known = " or ".join(watchable)
            why = f"must be {known}; val_psnr_<mode> needs <mode> in val_ref_modes"
            raise bad("early_stop_metric", why)
        if self.keep == "last" and self.patience is not None:
            raise bad("keep", "'last' keeps the final epoch: set patience to null with it")
        if self.adv_w > 0 and self.size % CRITIC_STRIDE:
            why = f"the critic's FC is sized to the crop: needs size a multiple of {CRITIC_STRIDE}"
            raise bad("size", f"{why} when adv_w > 0")
        if self.budget_steps is not None and self.budget_images is not None:
            raise bad("budget_images", "cannot be combined with budget_steps; set one of them")
        steps = self.step_budget
        if steps is not None and self.epochs > steps:
            raise bad("epochs", f"validation rounds must not exceed the step budget of {steps}")
        return self

    # ---------------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TrainConfig):
            return NotImplemented
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(self._compared())

    def _compared(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.field_names() if name != "extra")

    @property
    def res_blocks(self) -> tuple[int, int, int, int]:
        return parse_blocks(self.num_res_blocks)

    @property
    def step_budget(self) -> int | None:
        """Optimiser steps of a budgeted run (``budget_images`` rounded up to whole batches), or
        None when the run is limited by ``epochs``."""
        if self.budget_steps is not None:
            return self.budget_steps
        if self.budget_images is not None:
            return math.ceil(self.budget_images / self.batch_size)
        return None

    def early_stop_metrics(self) -> tuple[str, ...]:
        """The metrics ``early_stop_metric`` may name: val_psnr and one per ``val_ref_modes``."""
        return (
            names.VAL_PSNR,
            *(names.for_ref_mode(names.VAL_PSNR, m) for m in self.val_ref_modes),
        )

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(cls.model_fields)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a plain mapping (YAML, Tune config, CLI); unknown keys and wrong types are
        errors naming the key."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"config: must be a mapping of TrainConfig fields (got {values!r})")
        _reject_unknown(values)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (tuples stay tuples); ``from_dict(to_dict())`` round-trips."""
        return self.model_dump()

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})


# ------------------------------------------------------------------------------------------------
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_set(text: str) -> tuple[str, Any]:
    """``--set KEY=VALUE``: the value is parsed as YAML (``3``, ``0.5``, ``[other]``, ``null``),
    and a number YAML 1.1 reads as text (``1e-4``) as that number."""
    import yaml

    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise ConfigError(f"--set {text}: use KEY=VALUE, e.g. --set lr=1e-4")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        raise ConfigError(f"--set {text}: the value is not valid YAML") from None
    if isinstance(parsed, str) and _EXPONENT_NUMBER.fullmatch(parsed.strip()):
        return key, float(parsed)  # YAML 1.1 reads 1e-4 (no dot) as text; mean the number
    return key, parsed


def _reject_unknown(values: Mapping[Any, Any]) -> None:
    known = TrainConfig.model_fields
    unknown = sorted(str(key) for key in values if key not in known)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
        )


_PHRASES = {  # pydantic error type -> our words, formatted with its context
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "dict_type": "must be a mapping",
    "tuple_type": "must be a list",
    "greater_than": "must be > {gt:g}",
    "greater_than_equal": "must be >= {ge:g}",
    "less_than": "must be < {lt:g}",
    "less_than_equal": "must be <= {le:g}",
    "multiple_of": "must be a multiple of {multiple_of:g}",
    "literal_error": "must be one of {expected}",
}


def _one_line(exc: ValidationError, values: Mapping[str, Any]) -> str:
    """The first error of pydantic's report on ``values`` as ``<field>: <why> (got <value>)``."""
    error = exc.errors(include_url=False)[0]
    ctx = error.get("ctx") or {}
    if isinstance(ctx.get("error"), ConfigError):  # raised by our own validators, worded there
        return str(ctx["error"])
    loc = error["loc"]
    name = str(loc[0]) if loc else "config"
    where = name + "".join(f"[{part}]" for part in loc[1:])
    kind, got = error["type"], error["input"]
    field = TrainConfig.model_fields.get(name)
    nullable = field is not None and type(None) in get_args(field.annotation)
    if kind in ("too_short", "too_long") or (kind == "missing" and len(loc) > 1):
        items = len(get_args(field.annotation)) if field is not None else "?"
        return f"{name}: must be a list of {items} items (got {values.get(name)!r})"
    if got is None:
        return f"{where}: must not be null"
    why = _PHRASES[kind].format(**ctx) if kind in _PHRASES else error["msg"]
    if nullable and why.startswith("must be"):
        why += " or null"
    return f"{where}: {why} (got {got!r})"
