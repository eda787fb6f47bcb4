"""The typed training configuration: one flat dataclass, validated in one place.

Flat on purpose: every field is one MLflow param and one possible Tune search dimension, and a
typo in a key is an error (``TrainConfig.from_dict`` rejects unknown keys) instead of a loss that
silently stays off.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, get_type_hints

REF_MODES = ("gt", "gt-augmented", "other", "paired")
AMP_MODES = ("auto", "bf16", "fp16", "off")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


@dataclass(frozen=True)
class TrainConfig:
    # --- data -------------------------------------------------------------------------------
    data: str | None = None  # prepared shard dir, CUFED-style paired dir, or None = built-in set
    size: int = 160  # HR / reference side in pixels (multiple of 4); LR is size // 4
    batch_size: int = 8
    fraction: float = 1.0  # nested deterministic subset of each split, in (0, 1]
    ref_mode: str = "gt"  # one of REF_MODES
    val_limit: int | None = None  # cap on validation images per epoch (None = whole test split)
    num_workers: int = 0  # DataLoader workers
    # inpainting (seed Exp2-3/2-4): a box of the reference is blurred, LR comes from it
    inpaint: bool = False
    inpaint_box: tuple[float, float, float, float] = (0.5, 0.5, 0.8, 0.8)  # x0, y0, x1, y1
    inpaint_blur: float = 5.0  # Pillow GaussianBlur radius
    inpaint_random: bool = False  # random box per sample (deterministic on the test split)

    # --- model ------------------------------------------------------------------------------
    n_feats: int = 64
    num_res_blocks: str = "16+16+8+4"
    res_scale: float = 1.0
    vgg_weights: str | None = None  # path to torchvision VGG19 ImageNet weights (else cache/env)
    search_chunk: int | None = None  # reference positions per chunk in the search (None = auto)
    init_checkpoint: str | None = None  # start from these model weights (fine-tuning)

    # --- losses -----------------------------------------------------------------------------
    rec_w: float = 1.0
    per_w: float = 0.0
    tpl_w: float = 0.0
    adv_w: float = 0.0
    tpl_loss: str = "l2"  # "l2" or "l1"
    tpl_use_s: bool = False  # weight the transferal perceptual loss by sigmoid(S)
    gan_k: int = 2  # discriminator steps per generator step
    gp_weight: float = 10.0
    init_epochs: int = 0  # reconstruction-only epochs before the other losses join

    # --- optimisation -----------------------------------------------------------------------
    epochs: int = 10  # maximum number of epochs
    lr: float = 1e-4  # MainNet
    lr_lte: float = 1e-5
    lr_d: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    lr_decay_epochs: int = 999  # step decay period (the reference's never fires)
    lr_gamma: float = 0.5

    # --- early stopping ---------------------------------------------------------------------
    patience: int | None = 3  # epochs without val_psnr improvement > min_delta (None = off)
    min_delta: float = 0.0
    divergence_floor_db: float = 3.0  # diverged when val_psnr falls this far below its best
    early_stop_metric: str = "val_psnr"  # val_psnr or val_psnr_<mode> of val_ref_modes
    spike_factor: float | None = 20.0  # diverged: loss above this x its running median
    saturation_rise: float | None = 0.05  # diverged: white-pixel share above baseline + this
    val_ref_modes: tuple[str, ...] = ()  # extra reference modes to validate with
    budget_steps: int | None = None  # fixed number of optimiser steps (epochs = val rounds)
    budget_images: int | None = None  # fixed number of training images seen

    # --- runtime ----------------------------------------------------------------------------
    device: str = "auto"  # one of DEVICES
    amp: str = "auto"  # bf16 on CUDA, fp32 on CPU
    channels_last: bool = True
    compile: bool = False
    search_dtype: str = "fp32"
    fused_optim: bool = True
    fast_kernels: bool = True
    checkpoint_activations: bool = False
    seed: int = 0
    out_dir: str = "runs/ttsr"
    sample_every: int = 1  # write sample grids every N epochs (0 = never)
    num_samples_grid: int = 4
    log_every_steps: int = 0  # 0 = only per-epoch summaries

    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # free-form tags

    # ---------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"{name}: {why} (got {getattr(self, name)!r})")

        if self.size <= 0 or self.size % 4:
            raise bad("size", "must be a positive multiple of 4")
        if self.batch_size < 1:
            raise bad("batch_size", "must be >= 1")
        if not (0.0 < self.fraction <= 1.0):
            raise bad("fraction", "must be in (0, 1]")
        if self.ref_mode not in REF_MODES:
            raise bad("ref_mode", f"must be one of {', '.join(REF_MODES)}")
        if self.amp not in AMP_MODES:
            raise bad("amp", f"must be one of {', '.join(AMP_MODES)}")
        if self.device not in DEVICES:
            raise bad("device", f"must be one of {', '.join(DEVICES)}")
        if self.tpl_loss not in ("l1", "l2"):
            raise bad("tpl_loss", "must be 'l1' or 'l2'")
        for name in ("rec_w", "per_w", "tpl_w", "adv_w", "gp_weight", "min_delta"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise bad(name, "must be a finite number >= 0")
        for name in ("lr", "lr_lte", "lr_d", "eps"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise bad(name, "must be a finite number > 0")
        for name in ("beta1", "beta2"):
            if not (0.0 <= getattr(self, name) < 1.0):
                raise bad(name, "must be in [0, 1)")
        if self.epochs < 1:
            raise bad("epochs", "must be >= 1")
        if self.init_epochs < 0:
            raise bad("init_epochs", "must be >= 0")
        if self.gan_k < 1:
            raise bad("gan_k", "must be >= 1")
        if self.patience is not None and self.patience < 1:
            raise bad("patience", "must be >= 1 or null")
        if self.n_feats < 2 or self.n_feats % 2:
            raise bad("n_feats", "must be an even number >= 2")
        try:
            blocks = [int(b) for b in self.num_res_blocks.split("+")]
        except ValueError:
            raise bad("num_res_blocks", "must look like '16+16+8+4'") from None
        if len(blocks) != 4 or min(blocks) < 1:
            raise bad("num_res_blocks", "must be four positive integers joined by '+'")
        x0, y0, x1, y1 = self.inpaint_box
        if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            raise bad("inpaint_box", "must be x0, y0, x1, y1 fractions with 0 <= x0 < x1 <= 1")
        if self.inpaint_blur < 0:
            raise bad("inpaint_blur", "must be >= 0")
        if self.val_limit is not None and self.val_limit < 1:
            raise bad("val_limit", "must be >= 1 or null")
        if self.num_workers < 0:
            raise bad("num_workers", "must be >= 0")
        if self.sample_every < 0:
            raise bad("sample_every", "must be >= 0")
        if self.search_chunk is not None and self.search_chunk < 1:
            raise bad("search_chunk", "must be >= 1 or null")

    # ---------------------------------------------------------------------------------------
    @property
    def res_blocks(self) -> tuple[int, int, int, int]:
        a, b, c, d = (int(x) for x in self.num_res_blocks.split("+"))
        return a, b, c, d

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a plain dict (YAML, Tune config, CLI); unknown keys and wrong types are
        errors naming the key."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        hints = get_type_hints(cls)
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
            )
        converted = {name: _coerce(name, hints[name], value) for name, value in values.items()}
        return cls(**converted)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def _coerce(name: str, hint: Any, value: Any) -> Any:
    """Accept what YAML and JSON give (ints for floats, lists for tuples); reject the rest."""
    text = str(hint)
    optional = "None" in text
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name}: must not be null")
    if "tuple[str" in text:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}: must be a list of strings (got {value!r})")
        return tuple(value)
    if "tuple" in text:
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{name}: must be a list of numbers (got {value!r})")
        return tuple(float(v) for v in value)
    if "dict" in text:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: must be a mapping (got {value!r})")
        return value
    if "bool" in text:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: must be true or false (got {value!r})")
        return value
    if "float" in text:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}: must be a number (got {value!r})")
        return float(value)
    if "int" in text:
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
            raise ConfigError(f"{name}: must be an integer (got {value!r})")
        return int(value)
    if "str" in text:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: must be a string (got {value!r})")
        return value
    return value
