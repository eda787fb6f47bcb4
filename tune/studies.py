"""The schema of ``experiments.yaml``: parse, validate, and resolve a study for one profile.

One place validates everything, so a typo fails before Ray starts. The training-config part is
checked by ``TrainConfig.from_dict`` (the single owner of those rules); this module adds the
study-level keys (objectives, search space, scheduler, resources, profiles). Every error is one
line: ``experiments.yaml: study 'NAME': FIELD.PATH: why``.

File layout::

    studies:
      NAME:
        description: str
        objectives: [{metric: val_psnr, mode: max}, ...]   # 1 or 2 (2 = multi-objective)
        scheduler: asha | fifo                             # asha needs a single objective
        config: {TrainConfig keys}                         # fixed for all profiles
        cases: [{TrainConfig keys}, ...]                   # grid over coupled settings
        search: {key: {grid|choice: [..]} | {uniform|loguniform: [lo, hi]}}
        num_samples: int                                   # Optuna trials (grid: repeats)
        profiles:
          seed: {data, config, cases, search, num_samples, cpus_per_trial, gpus_per_trial,
                 max_concurrent, grace_period}
          demo: {...same keys...}

A profile's ``config`` is merged over the study's; its ``cases``/``search`` replace the study's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ttsr import names
from ttsr.config import ConfigError, TrainConfig

PROFILES = ("seed", "demo")
SCHEDULERS = ("asha", "fifo")
MODES = ("max", "min")
SEARCH_KINDS = ("grid", "choice", "uniform", "loguniform")
METRICS = frozenset(
    value for key, value in vars(names).items() if key.isupper() and isinstance(value, str)
)

STUDY_KEYS = frozenset(
    {"description", "objectives", "scheduler", "config", "cases", "search", "num_samples"}
    | {"profiles", "cpus_per_trial", "gpus_per_trial", "max_concurrent", "grace_period", "data"}
)
PROFILE_KEYS = frozenset(
    {"description", "data", "config", "cases", "search", "num_samples", "cpus_per_trial"}
    | {"gpus_per_trial", "max_concurrent", "grace_period"}
)


class StudyError(ValueError):
    """experiments.yaml is invalid; the message names file, study and field."""


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

    def grid_size(self) -> int:
        n = max(1, len(self.cases))
        for dim in self.search.values():
            n *= len(dim.values)
        return n

    def num_trials(self) -> int:
        return self.grid_size() * self.num_samples if self.is_grid else self.num_samples

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
def load_file(path: str | Path) -> dict[str, Any]:
    """Read and structurally check the YAML; returns the raw ``studies`` mapping."""
    path = Path(path)
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


def study_names(path: str | Path) -> list[str]:
    return list(load_file(path))


def load_study(path: str | Path, name: str, profile: str) -> Study:
    """Resolve study ``name`` for ``profile``; validates the whole study (both profiles)."""
    studies = load_file(path)
    label = Path(path).name
    if name not in studies:
        raise StudyError(f"{label}: unknown study {name!r}; known: {', '.join(studies)}")
    if profile not in PROFILES:
        raise StudyError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    resolved = {p: _resolve(label, name, studies[name], p) for p in PROFILES}
    return resolved[profile]


def load_all(path: str | Path) -> dict[str, dict[str, Study]]:
    """Every study × profile, validated (the test that checks every shipped study uses this)."""
    studies = load_file(path)
    label = Path(path).name
    return {n: {p: _resolve(label, n, raw, p) for p in PROFILES} for n, raw in studies.items()}


# ------------------------------------------------------------------------------------------------
def _resolve(label: str, name: str, raw: dict[str, Any], profile: str) -> Study:
    def fail(where: str, why: str) -> StudyError:
        return StudyError(f"{label}: study {name!r}: {where}: {why}")

    unknown = sorted(set(raw) - STUDY_KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key; known: {', '.join(sorted(STUDY_KEYS))}")
    profiles = raw.get("profiles")
    if not isinstance(profiles, dict):
        raise fail("profiles", f"must be a mapping with {' and '.join(PROFILES)}")
    missing = [p for p in PROFILES if p not in profiles]
    extra = sorted(set(profiles) - set(PROFILES))
    if missing:
        raise fail("profiles", f"missing profile(s) {', '.join(missing)}")
    if extra:
        raise fail(f"profiles.{extra[0]}", f"unknown profile; known: {', '.join(PROFILES)}")
    prof = profiles[profile] if profiles[profile] is not None else {}
    if not isinstance(prof, dict):
        raise fail(f"profiles.{profile}", "must be a mapping")
    unknown = sorted(set(prof) - PROFILE_KEYS)
    if unknown:
        known = ", ".join(sorted(PROFILE_KEYS))
        raise fail(f"profiles.{profile}.{unknown[0]}", f"unknown key; known: {known}")

    def pick(key: str, default: Any) -> tuple[str, Any]:
        if key in prof:
            return f"profiles.{profile}.{key}", prof[key]
        return key, raw.get(key, default)

    description = raw.get("description", "")
    if not isinstance(description, str):
        raise fail("description", "must be a string")

    objectives = _objectives(raw.get("objectives"), fail)
    scheduler = raw.get("scheduler", "asha" if len(objectives) == 1 else "fifo")
    if scheduler not in SCHEDULERS:
        raise fail("scheduler", f"must be one of {', '.join(SCHEDULERS)} (got {scheduler!r})")
    if scheduler == "asha" and len(objectives) > 1:
        raise fail("scheduler", "asha needs a single objective; use fifo for multi-objective")

    # fixed config: study config, then the profile's config over it
    base = raw.get("config") or {}
    if not isinstance(base, dict):
        raise fail("config", "must be a mapping of TrainConfig keys")
    over = prof.get("config") or {}
    if not isinstance(over, dict):
        raise fail(f"profiles.{profile}.config", "must be a mapping of TrainConfig keys")
    # partial mappings are checked on top of TrainConfig's defaults, then merged
    _check_config("config", base, fail)
    _check_config(f"profiles.{profile}.config", over, fail)
    config = {**base, **over}
    _check_config(f"profiles.{profile}.config", config, fail)

    where, cases_raw = pick("cases", None)
    cases: list[dict[str, Any]] = []
    if cases_raw is not None:
        if not isinstance(cases_raw, list) or not cases_raw:
            raise fail(where, "must be a non-empty list of config mappings")
        for i, case in enumerate(cases_raw):
            if not isinstance(case, dict) or not case:
                raise fail(f"{where}[{i}]", "must be a non-empty mapping of TrainConfig keys")
            _check_config(f"{where}[{i}]", {**config, **case}, fail)
            cases.append(dict(case))

    where, search_raw = pick("search", None)
    search: dict[str, SearchDim] = {}
    if search_raw is not None:
        if not isinstance(search_raw, dict) or not search_raw:
            raise fail(where, "must be a mapping of TrainConfig key -> {kind: values}")
        for key, spec in search_raw.items():
            search[key] = _search_dim(f"{where}.{key}", key, spec, config, fail)
    kinds = {d.kind for d in search.values()}
    if "grid" in kinds and kinds - {"grid"}:
        raise fail(where, "mixes grid with sampled dimensions; use only grid, or none")
    if cases and kinds - {"grid"}:
        raise fail(where, "cases are a grid; combine them only with grid dimensions")
    overlap = sorted(set(search) & {k for c in cases for k in c})
    if overlap:
        raise fail(where, f"{overlap[0]} is set both by cases and search")

    num_where, num_samples = pick("num_samples", 1)
    num_samples = _positive_int(num_where, num_samples, fail)
    cpus = _positive_number(*pick("cpus_per_trial", 1), fail, allow_zero=False)
    gpus = _positive_number(*pick("gpus_per_trial", 0), fail, allow_zero=True)
    max_concurrent = _positive_int(*pick("max_concurrent", 1), fail)
    grace = _positive_int(*pick("grace_period", 1), fail)
    data_where, data = pick("data", None)
    if data is not None and not isinstance(data, str):
        raise fail(data_where, f"must be a path string or null (got {data!r})")
    if "data" in config:
        raise fail("config.data", "set the data path with the profile's 'data' key or --data")

    descriptions = {
        p: (profiles[p] or {}).get("description", "") if isinstance(profiles[p], dict) else ""
        for p in PROFILES
    }
    return Study(
        name=name,
        profile=profile,
        description=description.strip(),
        objectives=objectives,
        scheduler=scheduler,
        config=config,
        cases=tuple(cases),
        search=search,
        num_samples=num_samples,
        cpus_per_trial=cpus,
        gpus_per_trial=gpus,
        max_concurrent=max_concurrent,
        grace_period=grace,
        data=data,
        profiles=descriptions,
    )


def _objectives(raw: Any, fail) -> tuple[Objective, ...]:
    if raw is None:
        return (Objective(names.VAL_PSNR, "max"),)
    if not isinstance(raw, list) or not 1 <= len(raw) <= 2:
        raise fail("objectives", "must be a list of 1 or 2 {metric, mode} mappings")
    out = []
    for i, item in enumerate(raw):
        where = f"objectives[{i}]"
        if not isinstance(item, dict) or set(item) != {"metric", "mode"}:
            raise fail(where, "must be a mapping with exactly 'metric' and 'mode'")
        if item["metric"] not in METRICS:
            raise fail(f"{where}.metric", f"unknown metric {item['metric']!r} (see ttsr/names.py)")
        if item["mode"] not in MODES:
            raise fail(f"{where}.mode", f"must be max or min (got {item['mode']!r})")
        out.append(Objective(item["metric"], item["mode"]))
    if len({o.metric for o in out}) != len(out):
        raise fail("objectives", "lists a metric twice")
    return tuple(out)


def _check_config(where: str, values: dict[str, Any], fail) -> None:
    """Validate through TrainConfig, the one owner of the training rules."""
    try:
        TrainConfig.from_dict(values)
    except ConfigError as e:
        msg = str(e)
        key, sep, why = msg.partition(": ")
        if sep and " " not in key:
            raise fail(f"{where}.{key}", why) from None
        raise fail(where, msg) from None


def _search_dim(where: str, key: str, spec: Any, config: dict[str, Any], fail) -> SearchDim:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise fail(where, f"must be one of {{{' | '.join(SEARCH_KINDS)}: [...]}}")
    kind, values = next(iter(spec.items()))
    if kind not in SEARCH_KINDS:
        raise fail(where, f"unknown kind {kind!r}; known: {', '.join(SEARCH_KINDS)}")
    if not isinstance(values, list) or not values:
        raise fail(f"{where}.{kind}", "must be a non-empty list")
    if kind in ("uniform", "loguniform"):
        if len(values) != 2 or not all(_is_number(v) for v in values):
            raise fail(f"{where}.{kind}", f"must be [low, high] numbers (got {values!r})")
        lo, hi = float(values[0]), float(values[1])
        if not lo < hi:
            raise fail(f"{where}.{kind}", f"low must be < high (got {values!r})")
        if kind == "loguniform" and lo <= 0:
            raise fail(f"{where}.{kind}", "loguniform needs low > 0; use choice to include 0")
        probes = [lo, hi]
        values = [lo, hi]
    else:
        if len(set(map(repr, values))) != len(values):
            raise fail(f"{where}.{kind}", f"has duplicate values ({values!r})")
        probes = values
    for v in probes:
        try:
            TrainConfig.from_dict({**config, key: v})
        except ConfigError as e:
            msg = str(e)
            _, sep, why = msg.partition(": ")
            raise fail(where, why if sep and msg.startswith(key) else msg) from None
    return SearchDim(kind, tuple(values))


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _positive_int(where: str, v: Any, fail) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise fail(where, f"must be an integer >= 1 (got {v!r})")
    return v


def _positive_number(where: str, v: Any, fail, *, allow_zero: bool) -> float:
    if not _is_number(v) or v < 0 or (v == 0 and not allow_zero):
        raise fail(where, f"must be a number {'>= 0' if allow_zero else '> 0'} (got {v!r})")
    return float(v)


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
