"""experiments.yaml: parse, validate, and resolve a study for one profile (layout:
docs/STUDIES.md).

The file's shape is pydantic models (unknown keys are errors at every level; numbers are strict:
YAML's ``"8"`` or ``true`` is not a count); the training-config part is checked by
``TrainConfig.from_dict`` (the single owner of those rules); the rules that need several fields at
once (search kinds, cases, the report's param) are checked while a study is resolved for a
profile. Every error is one line: ``experiments.yaml: study 'NAME': FIELD.PATH: why``. A
profile's ``config`` is merged over the study's; its other keys replace the study's.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ttsr import names
from ttsr.config import ConfigError, TrainConfig
from ttsr.config import parse_set as config_parse_set
from ttsr.errors import UsageError

PROFILES = ("seed", "demo")
RECONSTRUCTION_ONLY = {"per_w": 0.0, "tpl_w": 0.0, "adv_w": 0.0, "init_epochs": 0}
REPORT_KINDS_WITH_PARAM = ("speed", "scaling")  # they plot a quantity against the varied key


class StudyError(UsageError, ValueError):
    """experiments.yaml is invalid; the message names file, study and field."""


# ------------------------------------------------------------------------------------------------
# The file's shape
Scheduler = Literal["asha", "fifo"]
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
    mode: Literal["max", "min"]

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"unknown metric {v!r} (see ttsr/names.py)")
        return v


class ReportSpec(_Schema):
    kind: Literal["speed", "reference", "tradeoff", "scaling", "divergence"]
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
        if sum(getattr(self, k) is not None for k in SEARCH_KINDS) != 1:
            raise ValueError(f"must be one of {{{' | '.join(SEARCH_KINDS)}: [...]}}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in SEARCH_KINDS if getattr(self, k) is not None)

    @property
    def values(self) -> tuple[Any, ...]:
        """grid/choice values, or (low, high) as floats."""
        values = getattr(self, self.kind)
        return (
            tuple(map(float, values)) if self.kind in ("uniform", "loguniform") else tuple(values)
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
def first_error(error: ValidationError, model: type[BaseModel]) -> tuple[str, str]:
    """pydantic's first error as ("profiles.demo.num_samples", "must be an integer >= 1 (got 0)"),
    for the ``FILE: study 'NAME': FIELD: why`` messages."""
    err = error.errors(include_url=False)[0]
    loc = err["loc"]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    return where or "(top level)", _why(err, _model_at(model, loc[:-1]))


def _why(err: dict[str, Any], parent: type[BaseModel] | None) -> str:
    kind, ctx, got = err["type"], err.get("ctx") or {}, _shown(err.get("input"))
    if kind == "extra_forbidden":
        known = ", ".join(sorted(parent.model_fields)) if parent else ""
        return f"unknown key; known: {known}" if known else "unknown key"
    if kind == "missing":
        return "required"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "literal_error":
        return f"must be {ctx['expected']} (got {got})"
    bounds = {
        "greater_than_equal": ">=",
        "greater_than": ">",
        "less_than_equal": "<=",
        "less_than": "<",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()))
        number = "an integer" if isinstance(limit, int) else "a number"
        return f"must be {number} {bounds[kind]} {limit:g} (got {got})"
    if kind in ("too_short", "too_long"):
        lo, hi = ctx.get("min_length"), ctx.get("max_length")
        if kind == "too_long":
            return f"must have at most {hi} items (got {got})"
        least = "one item" if lo == 1 else f"{lo} items"
        return f"must have at least {least} (got {got})"
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
        return f"must be {types[kind]} (got {got})"
    return f"{err['msg'][0].lower()}{err['msg'][1:]} (got {got})"


def _shown(value: Any) -> str:
    """An input value as shown in a message: its repr, cut to one short line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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


# Study fields that ``--set KEY=VALUE`` may override (besides every TrainConfig field).
OVERRIDABLE = tuple(OverrideSpec.model_fields)


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Study:
    """One study resolved for one profile: everything the Tuner needs, validated."""

    name: str
    profile: str
    description: str
    objectives: tuple[ObjectiveSpec, ...]
    scheduler: str
    config: dict[str, Any]  # fixed TrainConfig values (validated)
    cases: tuple[dict[str, Any], ...]  # coupled grid points; () = none
    search: dict[str, SearchSpec]  # .kind and .values: grid/choice values, or (lo, hi)
    num_samples: int
    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int
    grace_period: int
    data: str | None  # the profile's default data path (seed: the prepared FFHQ dir)
    repeats: int = 1  # each configuration runs with seeds seed, seed+1, ...
    report_kind: str | None = None  # None = curves only
    report_param: str | None = None  # the varied key a speed/scaling report plots against
    pretrain: dict[str, Any] | None = None  # full TrainConfig values of the warm start, if any
    start_points: tuple[dict[str, Any], ...] = ()  # configurations Optuna evaluates first

    @property
    def needs_imagenet_vgg(self) -> bool:
        """Whether the numbers mean anything without ImageNet VGG19 weights: every quality
        study's texture extractor, perceptual losses and val_perceptual need them; a speed
        study's timings do not depend on the weights."""
        return self.report_kind != "speed"

    @property
    def is_grid(self) -> bool:
        """Grid studies enumerate every point with tune.grid_search (Tune's default searcher);
        the others sample with Optuna."""
        return bool(self.cases) or any(d.kind == "grid" for d in self.search.values())

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def metric(self) -> str:
        return self.objectives[0].metric

    @property
    def mode(self) -> str:
        return self.objectives[0].mode

    @property
    def varied_keys(self) -> list[str]:
        """The TrainConfig keys that differ between trials (cases first, then search)."""
        return [*sorted({k for c in self.cases for k in c}), *self.search]

    def num_trials(self) -> int:
        configs = len(self.trial_configs()) if self.is_grid else 1
        return configs * self.num_samples * self.repeats

    def trial_configs(self) -> list[dict[str, Any]]:
        """Every distinct grid point as a full config dict; the fixed config if none."""
        points = [dict(self.config)]
        if self.cases:
            points = [{**p, **c} for p in points for c in self.cases]
        for key, dim in self.search.items():
            if dim.kind == "grid":
                points = [{**p, key: v} for p in points for v in dim.values]
        return points


# ------------------------------------------------------------------------------------------------
def parse_set(text: str) -> tuple[str, Any]:
    """``--set KEY=VALUE`` as ``ttsr.train`` reads it (`ttsr.config.parse_set`)."""
    try:
        return config_parse_set(text)
    except ConfigError as exc:
        raise StudyError(str(exc)) from None


@dataclass(frozen=True)
class StudyFile:
    """An experiments.yaml parsed and shape-checked once; resolves its studies on demand."""

    label: str  # the file name, at the start of every message
    specs: Mapping[str, StudySpec]

    @classmethod
    def load(cls, path: str | Path) -> StudyFile:
        path = Path(path)
        specs = {}
        for name, study in _read_studies(path).items():
            try:
                specs[name] = StudySpec.model_validate(study)
            except ValidationError as e:
                where, why = first_error(e, StudySpec)
                raise StudyError(f"{path.name}: study {name!r}: {where}: {why}") from None
        return cls(path.name, specs)

    def __iter__(self):
        return iter(self.specs)

    def resolve(
        self,
        name: str,
        *,
        overrides: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Study]:
        """Study ``name`` for every profile (all validated), with ``overrides`` applied.
        ``labels``: how an override key is named in errors (default ``--set KEY``)."""
        if name not in self.specs:
            known = ", ".join(self.specs)
            raise StudyError(f"{self.label}: unknown study {name!r}; known: {known}")
        ctx = _Context(self.label, name, dict(overrides or {}), dict(labels or {}))
        return {p: _resolve(ctx, self.specs[name], p) for p in PROFILES}

    def all(self) -> dict[str, dict[str, Study]]:
        return {name: self.resolve(name) for name in self.specs}


def load_study(
    path: str | Path, name: str, profile: str, *, overrides: Mapping[str, Any] | None = None
) -> Study:
    """Resolve study ``name`` for ``profile``; validates the whole study (both profiles)."""
    studies = StudyFile.load(path)
    if profile not in PROFILES:
        raise StudyError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    return studies.resolve(name, overrides=overrides)[profile]


def load_all(path: str | Path) -> dict[str, dict[str, Study]]:
    """Every study × profile, validated."""
    return StudyFile.load(path).all()


def _read_studies(path: Path) -> dict[str, Any]:
    """Read the YAML and check the top level; returns the raw ``studies`` mapping."""
    label = path.name
    try:
        text = path.read_text()
    except OSError as e:
        raise StudyError(f"{path}: cannot read ({e.strerror})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise StudyError(f"{label}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    if not isinstance(doc, dict) or set(doc) != {"studies"}:
        raise StudyError(f"{label}: the top level must be one mapping 'studies:'")
    studies = doc["studies"]
    if not isinstance(studies, dict) or not studies:
        raise StudyError(f"{label}: 'studies' must be a non-empty mapping of name -> study")
    for name, raw in studies.items():
        if not isinstance(raw, dict):
            raise StudyError(f"{label}: study {name!r}: must be a mapping")
    return studies


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Context:
    """Who is being resolved, for messages, and the overrides to apply."""

    label: str
    name: str
    overrides: dict[str, Any]
    labels: dict[str, str]

    def fail(self, where: str, why: str) -> StudyError:
        return StudyError(f"{self.label}: study {self.name!r}: {where}: {why}")

    def flag(self, key: str) -> str:
        return self.labels.get(key, f"--set {key}")

    def split(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(TrainConfig overrides, study-field overrides); anything else is an error."""
        train_keys = frozenset(TrainConfig().to_dict())
        train, study = {}, {}
        for key, value in self.overrides.items():
            if key in OVERRIDABLE:
                study[key] = value
            elif key in train_keys:
                train[key] = value
            else:
                close = difflib.get_close_matches(key, [*train_keys, *OVERRIDABLE], n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                known = f"a TrainConfig field or one of {', '.join(OVERRIDABLE)}"
                raise self.fail(self.flag(key), f"unknown key{hint}; use {known}")
        return train, study


def _resolve(ctx: _Context, spec: StudySpec, profile: str) -> Study:
    prof = getattr(spec.profiles, profile) or ProfileSpec()
    train_over, study_over = ctx.split()
    try:
        checked = OverrideSpec.model_validate(study_over)
    except ValidationError as e:
        where, why = first_error(e, OverrideSpec)
        raise ctx.fail(ctx.flag(where), why) from None

    def pick(key: str, default: Any = None) -> Any:
        """A study field: --set, else the profile's, else the study's, else the default."""
        if key in study_over:
            return getattr(checked, key)
        for level in (prof, spec):
            if key in level.model_fields_set:
                return getattr(level, key)
        return default

    def where(key: str) -> str:
        """Where a field is set, for messages: the profile's key when it sets it."""
        return f"profiles.{profile}.{key}" if key in prof.model_fields_set else key

    objectives = tuple(spec.objectives)
    if len({o.metric for o in objectives}) != len(objectives):
        raise ctx.fail("objectives", "lists a metric twice")
    scheduler = pick("scheduler", "asha" if len(objectives) == 1 else "fifo")
    if scheduler == "asha" and len(objectives) > 1:
        raise ctx.fail("scheduler", "asha needs a single objective; use fifo for multi-objective")

    config = _fixed_config(ctx, spec, prof, profile)
    cases_raw, search_raw = pick("cases"), pick("search")
    varied = {k for c in cases_raw or () for k in c} | set(search_raw or {})
    config = _apply_config_overrides(ctx, config, train_over, varied)
    cases = tuple(dict(c) for c in cases_raw or ())
    for i, case in enumerate(cases):
        _check_config(ctx, f"{where('cases')}[{i}]", {**config, **case})
    search = _search(ctx, where("search"), search_raw, config, cases)
    report_kind, report_param = _report(ctx, spec.report, varied)
    return Study(
        name=ctx.name,
        profile=profile,
        description=spec.description.strip(),
        objectives=objectives,
        scheduler=scheduler,
        config=config,
        cases=cases,
        search=search,
        num_samples=pick("num_samples", 1),
        cpus_per_trial=float(pick("cpus_per_trial", 1.0)),
        gpus_per_trial=float(pick("gpus_per_trial", 0.0)),
        max_concurrent=pick("max_concurrent", 1),
        grace_period=pick("grace_period", 1),
        data=pick("data"),
        repeats=pick("repeats", 1),
        report_kind=report_kind,
        report_param=report_param,
        pretrain=_pretrain(ctx, where("pretrain"), pick("pretrain"), config),
        start_points=_start_points(ctx, where("start_points"), pick("start_points"), search),
    )


def _fixed_config(ctx: _Context, spec: StudySpec, prof: ProfileSpec, profile: str) -> dict:
    """The study's config with the profile's merged over it; partial mappings are checked on
    top of TrainConfig's defaults, then the merge."""
    base, over = dict(spec.config), dict(prof.config)
    _check_config(ctx, "config", base)
    _check_config(ctx, f"profiles.{profile}.config", over)
    config = {**base, **over}
    _check_config(ctx, f"profiles.{profile}.config", config)
    if "data" in config:
        where = "config.data" if "data" in base else f"profiles.{profile}.config.data"
        raise ctx.fail(where, "set the data path with the profile's 'data' key or --data")
    return config


def _apply_config_overrides(
    ctx: _Context, config: dict[str, Any], train_over: dict[str, Any], varied: set[str]
) -> dict[str, Any]:
    for key in train_over:
        if key == "data":
            raise ctx.fail(ctx.flag(key), "set the data path with --data")
        if key in varied:
            why = "the study varies this key (cases/search); edit experiments.yaml to fix it"
            raise ctx.fail(ctx.flag(key), why)
    if not train_over:
        return config
    merged = {**config, **train_over}
    try:
        TrainConfig.from_dict(merged)
    except ConfigError as e:
        key, sep, why = str(e).partition(": ")
        if sep and key in train_over:
            raise ctx.fail(ctx.flag(key), why) from None
        raise ctx.fail(", ".join(ctx.flag(k) for k in train_over), str(e)) from None
    return merged


def _search(
    ctx: _Context,
    where: str,
    raw: dict[str, SearchSpec] | None,
    config: dict[str, Any],
    cases: tuple[dict[str, Any], ...],
) -> dict[str, SearchSpec]:
    search = dict(raw or {})
    for key, spec in search.items():
        for v in spec.values:  # grid/choice: every value; ranges: both ends
            try:
                TrainConfig.from_dict({**config, key: v})
            except ConfigError as e:
                msg = str(e)
                _, sep, why = msg.partition(": ")
                raise ctx.fail(
                    f"{where}.{key}", why if sep and msg.startswith(key) else msg
                ) from None
    kinds = {d.kind for d in search.values()}
    if "grid" in kinds and kinds - {"grid"}:
        raise ctx.fail(where, "mixes grid with sampled dimensions; use only grid, or none")
    if cases and kinds - {"grid"}:
        raise ctx.fail(where, "cases are a grid; combine them only with grid dimensions")
    overlap = sorted(set(search) & {k for c in cases for k in c})
    if overlap:
        raise ctx.fail(where, f"{overlap[0]} is set both by cases and search")
    return search


def _pretrain(ctx: _Context, where: str, raw: dict | None, config: dict) -> dict | None:
    """The warm start's TrainConfig values: the fixed config, reconstruction only (the other
    loss weights 0 unless ``pretrain`` sets them), with ``pretrain`` over it."""
    if raw is None:
        return None
    if "init_checkpoint" in raw:
        raise ctx.fail(f"{where}.init_checkpoint", "a warm start starts from scratch")
    values = {**config, **RECONSTRUCTION_ONLY, **raw}
    _check_config(ctx, where, values)
    return values


def _start_points(
    ctx: _Context, where: str, raw: list | None, search: dict[str, SearchSpec]
) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not search or any(d.kind == "grid" for d in search.values()):
        raise ctx.fail(where, "only a searched study (choice/uniform/loguniform) has them")
    for i, point in enumerate(raw):
        if set(point) != set(search):
            why = f"must set exactly the searched keys {', '.join(search)} (got {sorted(point)})"
            raise ctx.fail(f"{where}[{i}]", why)
        for key, value in point.items():
            dim = search[key]
            inside = (
                value in dim.values
                if dim.kind == "choice"
                else isinstance(value, int | float) and dim.values[0] <= value <= dim.values[1]
            )
            if not inside:
                raise ctx.fail(f"{where}[{i}].{key}", f"{value!r} is outside {list(dim.values)}")
    return tuple(dict(p) for p in raw)


def _report(
    ctx: _Context, report: ReportSpec | None, varied: set[str]
) -> tuple[str | None, str | None]:
    if report is None:
        return None, None
    if report.kind in REPORT_KINDS_WITH_PARAM:
        if report.param is None:
            raise ctx.fail("report.param", f"a {report.kind} report needs the varied key to plot")
        if report.param not in varied:
            known = ", ".join(sorted(varied)) or "none"
            why = f"{report.param!r} is not a key the study varies (varied: {known})"
            raise ctx.fail("report.param", why)
    elif report.param is not None:
        kinds = " and ".join(REPORT_KINDS_WITH_PARAM)
        raise ctx.fail("report.param", f"only {kinds} reports take a param (kind {report.kind})")
    return report.kind, report.param


def _check_config(ctx: _Context, where: str, values: dict[str, Any]) -> None:
    """Validate through TrainConfig, the one owner of the training rules."""
    try:
        TrainConfig.from_dict(values)
    except ConfigError as e:
        msg = str(e)
        key, sep, why = msg.partition(": ")
        if sep and " " not in key:
            raise ctx.fail(f"{where}.{key}", why) from None
        raise ctx.fail(where, msg) from None


# ------------------------------------------------------------------------------------------------
def choose_profile(
    *, requested: str | None, data: str | None, seed_data: str | None, cluster_gpus: float
) -> tuple[str, str]:
    """(profile, the reason printed at start): ``--profile`` wins; else ``seed`` when data is at
    hand (``--data``, or the study's seed data path exists) and the cluster has GPUs; else demo."""
    if requested is not None:
        return requested, "--profile given"
    if data is not None:
        have = "--data given"
    elif seed_data is not None and Path(seed_data).exists():
        have = f"seed data {seed_data} exists"
    else:
        where = f" ({seed_data} not found)" if seed_data else ""
        return "demo", f"no --data and no seed data{where}"
    if cluster_gpus <= 0:
        return "demo", f"{have}, but the cluster has no GPUs"
    return "seed", f"{have} and the cluster has {cluster_gpus:g} GPU(s)"
