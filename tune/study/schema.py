"""The shape of ``experiments.yaml`` as pydantic models, and their errors as one-line messages.

Unknown keys are errors at every level (``extra="forbid"``) and numbers are strict (YAML's
``"8"`` or ``true`` is not a count). What needs several fields at once or the training rules
(TrainConfig) is checked where a study is resolved, in ``tune/study/studies.py``.

``first_error`` turns pydantic's first error into ``("profiles.demo.num_samples",
"must be an integer >= 1 (got 0)")`` for the ``FILE: study 'NAME': FIELD: why`` messages.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ttsr import names

Mode = Literal["max", "min"]
Scheduler = Literal["asha", "fifo"]
ReportKind = Literal["speed", "reference", "tradeoff", "scaling", "divergence"]
SCHEDULERS = get_args(Scheduler)
MODES = get_args(Mode)
REPORT_KINDS = get_args(ReportKind)
SEARCH_KINDS = ("grid", "choice", "uniform", "loguniform")
METRICS = frozenset(
    value for key, value in vars(names).items() if key.isupper() and isinstance(value, str)
)


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Count = Annotated[int, Field(ge=1)]
CPUs = Annotated[float, Field(gt=0, allow_inf_nan=False)]
GPUs = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ObjectiveSpec(_Schema):
    metric: str
    mode: Mode

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"unknown metric {v!r} (see ttsr/names.py)")
        return v


class ReportSpec(_Schema):
    kind: ReportKind
    param: str | None = None


class SearchSpec(_Schema):
    """One search dimension: exactly one of the kinds, with its values."""

    grid: list[Any] | None = Field(default=None, min_length=1)
    choice: list[Any] | None = Field(default=None, min_length=1)
    uniform: list[float] | None = Field(default=None, min_length=2, max_length=2)
    loguniform: list[float] | None = Field(default=None, min_length=2, max_length=2)

    @field_validator("grid", "choice")
    @classmethod
    def _distinct(cls, v: list[Any] | None) -> list[Any] | None:
        if v is not None and len(set(map(repr, v))) != len(v):
            raise ValueError(f"has duplicate values ({v!r})")
        return v

    @field_validator("uniform", "loguniform")
    @classmethod
    def _range(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and not all(math.isfinite(x) for x in v):
            raise ValueError(f"must be [low, high] finite numbers (got {v!r})")
        if v is not None and not v[0] < v[1]:
            raise ValueError(f"low must be < high (got {v!r})")
        return v

    @field_validator("loguniform")
    @classmethod
    def _positive(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and v[0] <= 0:
            raise ValueError("loguniform needs low > 0; use choice to include 0")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> SearchSpec:
        if len(self._given()) != 1:
            raise ValueError(f"must be one of {{{' | '.join(SEARCH_KINDS)}: [...]}}")
        return self

    def _given(self) -> list[str]:
        return [k for k in SEARCH_KINDS if getattr(self, k) is not None]

    @property
    def kind(self) -> str:
        return self._given()[0]

    @property
    def values(self) -> tuple[Any, ...]:
        values = getattr(self, self.kind)
        return (
            tuple(float(v) for v in values)
            if self.kind in ("uniform", "loguniform")
            else tuple(values)
        )


class ProfileSpec(_Schema):
    """What a profile may set; the study level has the same keys (and more)."""

    description: str = ""
    data: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    cases: list[dict[str, Any]] | None = Field(default=None, min_length=1)
    search: dict[str, SearchSpec] | None = Field(default=None, min_length=1)
    num_samples: Count = 1
    repeats: Count = 1
    cpus_per_trial: CPUs = 1.0
    gpus_per_trial: GPUs = 0.0
    max_concurrent: Count = 1
    grace_period: Count = 1
    # TrainConfig values (over the fixed config) of a warm start the study trains once and
    # every trial fine-tunes from (init_checkpoint); cached by its config.
    pretrain: dict[str, Any] | None = None
    # configurations a searcher evaluates first (e.g. the reconstruction-only baseline)
    start_points: list[dict[str, Any]] | None = Field(default=None, min_length=1)

    @field_validator("cases")
    @classmethod
    def _nonempty_cases(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if v is not None and not all(v):
            raise ValueError("every case must be a non-empty mapping of TrainConfig keys")
        return v


class ProfilesSpec(_Schema):
    seed: ProfileSpec | None
    demo: ProfileSpec | None


class StudySpec(ProfileSpec):
    objectives: list[ObjectiveSpec] = Field(
        default_factory=lambda: [ObjectiveSpec(metric=names.VAL_PSNR, mode="max")],
        min_length=1,
        max_length=2,
    )
    scheduler: Scheduler | None = None
    report: ReportSpec | None = None
    profiles: ProfilesSpec


class OverrideSpec(_Schema):
    """The study fields ``--set`` may change, with the same rules as in the file."""

    num_samples: Count = 1
    repeats: Count = 1
    max_concurrent: Count = 1
    grace_period: Count = 1
    cpus_per_trial: CPUs = 1.0
    gpus_per_trial: GPUs = 0.0
    scheduler: Scheduler = "fifo"


# ------------------------------------------------------------------------------------------------
# pydantic's errors -> "field.path[0].key", "why (got ...)"
def first_error(error: ValidationError, model: type[BaseModel]) -> tuple[str, str]:
    err = error.errors(include_url=False)[0]
    loc = err["loc"]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    return where or "(top level)", _why(err, _model_at(model, loc[:-1]))


def _why(err: dict[str, Any], parent: type[BaseModel] | None) -> str:
    kind, ctx, got = err["type"], err.get("ctx") or {}, _Shown(err.get("input"))
    if kind == "extra_forbidden":
        known = ", ".join(sorted(parent.model_fields)) if parent else ""
        return f"unknown key; known: {known}" if known else "unknown key"
    if kind == "missing":
        return "required"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "literal_error":
        return f"must be {ctx['expected']} (got {got!r})"
    bounds = {
        "greater_than_equal": ">=",
        "greater_than": ">",
        "less_than_equal": "<=",
        "less_than": "<",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()))
        number = "an integer" if isinstance(limit, int) else "a number"
        return f"must be {number} {bounds[kind]} {limit:g} (got {got!r})"
    if kind in ("too_short", "too_long"):
        lo, hi = ctx.get("min_length"), ctx.get("max_length")
        return f"must have {_count_phrase(lo, hi, kind)} (got {got!r})"
    types = {
        "int_type": "an integer",
        "float_type": "a number",
        "finite_number": "a finite number",
        "string_type": "a string",
        "dict_type": "a mapping",
        "list_type": "a list",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
    }
    if kind in types:
        return f"must be {types[kind]} (got {got!r})"
    return f"{err['msg'][0].lower()}{err['msg'][1:]} (got {got!r})"


class _Shown:
    """An input value as shown in a message: its repr, cut to one short line."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        text = repr(self.value)
        return text if len(text) <= 80 else text[:77] + "..."


def _count_phrase(lo: int | None, hi: int | None, kind: str) -> str:
    if kind == "too_short" and lo == 1:
        return "at least one item"
    if kind == "too_short":
        return f"at least {lo} items"
    return f"at most {hi} items"


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class at ``loc`` inside ``model`` (for the 'known keys' of an unknown key)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            if part not in current.model_fields:
                return None
            current = current.model_fields[part].annotation
        else:  # a list index or a mapping key: the item type
            args = get_args(current)
            current = args[-1] if args else None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> ``X``."""
    if get_origin(tp) in (Union, type(int | None)):
        args = [a for a in get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp
