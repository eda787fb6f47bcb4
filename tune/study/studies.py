"""The schema of ``experiments.yaml``: parse, validate, and resolve a study for one profile.

One place validates everything, so a typo fails before Ray starts. The shape of the file (keys,
types, ranges; unknown keys are errors at every level) is pydantic models (tune/study/schema.py);
the training-config part is checked by ``TrainConfig.from_dict`` (the single owner of those rules);
the rules that need several fields at once (search kinds, cases, the report's param) are checked
while a study is resolved for a profile. Every error is one line: ``experiments.yaml: study 'NAME':
FIELD.PATH: why``.

File layout::

    studies:
      NAME:
        description: str
        objectives: [{metric: val_psnr, mode: max}, ...]   # 1 or 2 (2 = multi-objective)
        scheduler: asha | fifo                             # asha needs a single objective
        report: {kind: speed|reference|tradeoff|scaling|divergence, param: KEY}
        config: {TrainConfig keys}                         # fixed for all profiles
        cases: [{TrainConfig keys}, ...]                   # grid over coupled settings
        search: {key: {grid|choice: [..]} | {uniform|loguniform: [lo, hi]}}
        num_samples: int                                   # Optuna trials (grid: copies)
        repeats: int                                       # seeds per configuration
        profiles:
          seed: {data, config, cases, search, num_samples, repeats, cpus_per_trial,
                 gpus_per_trial, max_concurrent, grace_period}
          demo: {...same keys...}

A profile's ``config`` is merged over the study's; its other keys replace the study's.
``StudyFile.load`` parses a file once; ``load_study``/``load_all`` are the one-call forms.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ttsr.config import ConfigError, TrainConfig
from ttsr.config import parse_set as config_parse_set
from ttsr.errors import UsageError
from tune.study.schema import (
    OverrideSpec,
    ProfileSpec,
    ReportSpec,
    SearchSpec,
    StudySpec,
    first_error,
)

PROFILES = ("seed", "demo")
RECONSTRUCTION_ONLY = {"per_w": 0.0, "tpl_w": 0.0, "adv_w": 0.0, "init_epochs": 0}
REPORT_KINDS_WITH_PARAM = ("speed", "scaling")  # they plot a quantity against the varied key
# Study fields that ``--set KEY=VALUE`` may override (besides every TrainConfig field).
OVERRIDABLE = tuple(OverrideSpec.model_fields)


class StudyError(UsageError, ValueError):
    """experiments.yaml is invalid; the message names file, study and field."""


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str  # "max" or "min"


@dataclass(frozen=True)
class SearchDim:
    kind: str  # one of SEARCH_KINDS
    values: tuple[Any, ...]  # grid/choice values, or (lo, hi)


@dataclass(frozen=True)
class Study:
    """One study resolved for one profile: everything the Tuner needs, validated."""

    name: str
    profile: str
    description: str
    objectives: tuple[Objective, ...]
    scheduler: str
    config: dict[str, Any]  # fixed TrainConfig values (validated)
    cases: tuple[dict[str, Any], ...]  # coupled grid points; () = none
    search: dict[str, SearchDim]
    num_samples: int
    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int
    grace_period: int
    data: str | None  # the profile's default data path (seed: the prepared FFHQ dir)
    profiles: dict[str, str] = field(default_factory=dict)  # name -> description
    repeats: int = 1  # each configuration runs with seeds seed, seed+1, ...
    report_kind: str | None = None  # one of REPORT_KINDS; None = curves only
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

    def grid_size(self) -> int:
        n = max(1, len(self.cases))
        for dim in self.search.values():
            n *= len(dim.values)
        return n

    def num_trials(self) -> int:
        configs = self.grid_size() * self.num_samples if self.is_grid else self.num_samples
        return configs * self.repeats

    def trial_configs(self) -> list[dict[str, Any]]:
        """Every distinct grid point as a full config dict (grid studies); the fixed config
        otherwise."""
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
        raw = _read_studies(path)
        specs = {}
        for name, study in raw.items():
            try:
                specs[name] = StudySpec.model_validate(study)
            except ValidationError as e:
                where, why = first_error(e, StudySpec)
                raise StudyError(f"{path.name}: study {name!r}: {where}: {why}") from None
        return cls(path.name, specs)

    def __iter__(self):
        return iter(self.specs)

    def __contains__(self, name: object) -> bool:
        return name in self.specs

    def resolve(
        self,
        name: str,
        *,
        overrides: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Study]:
        """Study ``name`` for every profile (all validated), with ``overrides`` applied.

        ``labels``: how an override key is named in errors (default ``--set KEY``; run.py names
        the flags that became overrides, e.g. ``--max-epochs``)."""
        if name not in self.specs:
            raise StudyError(f"{self.label}: unknown study {name!r}; known: {', '.join(self)}")
        ctx = _Context(self.label, name, dict(overrides or {}), dict(labels or {}))
        return {p: _resolve(ctx, self.specs[name], p) for p in PROFILES}

    def study(
        self, name: str, profile: str, *, overrides: Mapping[str, Any] | None = None
    ) -> Study:
        if profile not in PROFILES:
            raise StudyError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
        return self.resolve(name, overrides=overrides)[profile]

    def all(self) -> dict[str, dict[str, Study]]:
        return {name: self.resolve(name) for name in self}


def load_file(path: str | Path) -> StudyFile:
    return StudyFile.load(path)


def load_study(
    path: str | Path, name: str, profile: str, *, overrides: Mapping[str, Any] | None = None
) -> Study:
    """Resolve study ``name`` for ``profile``; validates the whole study (both profiles)."""
    return StudyFile.load(path).study(name, profile, overrides=overrides)


def load_all(path: str | Path) -> dict[str, dict[str, Study]]:
    """Every study × profile, validated (the test that checks every shipped study uses this)."""
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
        train_keys = _train_config_keys()
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
    pick = _picker(ctx, spec, prof, profile, study_over)
    objectives = _objectives(ctx, spec)
    scheduler = pick("scheduler", "asha" if len(objectives) == 1 else "fifo")
    if scheduler == "asha" and len(objectives) > 1:
        raise ctx.fail("scheduler", "asha needs a single objective; use fifo for multi-objective")

    config = _fixed_config(ctx, spec, prof, profile)
    cases_where = f"profiles.{profile}.cases" if "cases" in prof.model_fields_set else "cases"
    search_where = f"profiles.{profile}.search" if "search" in prof.model_fields_set else "search"
    cases_raw = prof.cases if "cases" in prof.model_fields_set else spec.cases
    search_raw = prof.search if "search" in prof.model_fields_set else spec.search
    varied = {k for c in cases_raw or () for k in c} | set(search_raw or {})
    config = _apply_config_overrides(ctx, config, train_over, varied)
    cases = _cases(ctx, cases_where, cases_raw, config)
    search = _search(ctx, search_where, search_raw, config, cases)
    report_kind, report_param = _report(ctx, spec.report, varied)
    pretrain = _pretrain(ctx, pick("pretrain", None), config, profile, prof)
    start_points = _start_points(ctx, pick("start_points", None), search, profile, prof)
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
        data=pick("data", None),
        profiles={p: (getattr(spec.profiles, p) or ProfileSpec()).description for p in PROFILES},
        repeats=pick("repeats", 1),
        report_kind=report_kind,
        report_param=report_param,
        pretrain=pretrain,
        start_points=start_points,
    )


def _picker(ctx: _Context, spec: StudySpec, prof: ProfileSpec, profile: str, study_over: dict):
    """value of a study field: --set, else the profile's, else the study's, else the default."""
    try:
        checked = OverrideSpec.model_validate(study_over)
    except ValidationError as e:
        where, why = first_error(e, OverrideSpec)
        raise ctx.fail(ctx.flag(where), why) from None

    def pick(key: str, default: Any) -> Any:
        if key in study_over:
            return getattr(checked, key)
        for level in (prof, spec):
            if key in level.model_fields_set:
                return getattr(level, key)
        return default

    return pick


def _objectives(ctx: _Context, spec: StudySpec) -> tuple[Objective, ...]:
    out = tuple(Objective(o.metric, o.mode) for o in spec.objectives)
    if len({o.metric for o in out}) != len(out):
        raise ctx.fail("objectives", "lists a metric twice")
    return out


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


def _cases(
    ctx: _Context, where: str, raw: list[dict[str, Any]] | None, config: dict[str, Any]
) -> tuple[dict[str, Any], ...]:
    for i, case in enumerate(raw or ()):
        _check_config(ctx, f"{where}[{i}]", {**config, **case})
    return tuple(dict(c) for c in raw or ())


def _search(
    ctx: _Context,
    where: str,
    raw: dict[str, SearchSpec] | None,
    config: dict[str, Any],
    cases: tuple[dict[str, Any], ...],
) -> dict[str, SearchDim]:
    search: dict[str, SearchDim] = {}
    for key, spec in (raw or {}).items():
        for v in spec.values:  # grid/choice: every value; ranges: both ends
            try:
                TrainConfig.from_dict({**config, key: v})
            except ConfigError as e:
                msg = str(e)
                _, sep, why = msg.partition(": ")
                raise ctx.fail(
                    f"{where}.{key}", why if sep and msg.startswith(key) else msg
                ) from None
        search[key] = SearchDim(spec.kind, spec.values)
    kinds = {d.kind for d in search.values()}
    if "grid" in kinds and kinds - {"grid"}:
        raise ctx.fail(where, "mixes grid with sampled dimensions; use only grid, or none")
    if cases and kinds - {"grid"}:
        raise ctx.fail(where, "cases are a grid; combine them only with grid dimensions")
    overlap = sorted(set(search) & {k for c in cases for k in c})
    if overlap:
        raise ctx.fail(where, f"{overlap[0]} is set both by cases and search")
    return search


def _pretrain(
    ctx: _Context, raw: dict | None, config: dict, profile: str, prof: ProfileSpec
) -> dict | None:
    """The warm start's TrainConfig values: the fixed config, reconstruction only (the other
    loss weights 0 unless ``pretrain`` sets them), with ``pretrain`` over it."""
    if raw is None:
        return None
    where = f"profiles.{profile}.pretrain" if "pretrain" in prof.model_fields_set else "pretrain"
    if "init_checkpoint" in raw:
        raise ctx.fail(f"{where}.init_checkpoint", "a warm start starts from scratch")
    values = {**config, **RECONSTRUCTION_ONLY, **raw}
    _check_config(ctx, where, values)
    return values


def _start_points(
    ctx: _Context, raw: list | None, search: dict[str, SearchDim], profile: str, prof: ProfileSpec
) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    field = "start_points"
    where = f"profiles.{profile}.{field}" if field in prof.model_fields_set else field
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


def _train_config_keys() -> frozenset[str]:
    return frozenset(TrainConfig().to_dict())


# ------------------------------------------------------------------------------------------------
def choose_profile(
    *, requested: str | None, data: str | None, seed_data: str | None, cluster_gpus: float
) -> tuple[str, str]:
    """The profile rule: ``--profile`` wins; else ``seed`` when data is at hand (``--data``, or
    the study's seed data path exists) and the cluster has GPUs; else ``demo``.

    Returns (profile, reason) — the reason is printed at start.
    """
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
