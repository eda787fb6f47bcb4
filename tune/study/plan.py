"""What one ``tune/run.py`` invocation will do, resolved before anything starts.

``check`` validates everything that needs no cluster and returns a ``Request``; ``make`` picks the
profile for the cluster at hand and returns the ``Plan`` that ``--dry-run`` prints and the run
follows. A dry run plans for a cluster it may not be on: what only this machine lacks (a GPU, the
seed data, the VGG19 weights) lands in ``Plan.blockers``, printed with the plan, and
``tune/run.py`` then exits 2 with the first one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ttsr.config import TrainConfig
from ttsr.data.loading import auto_num_workers
from tune.execution import storage
from tune.execution.cluster import Cluster, local_gpu_count
from tune.search import optuna_store
from tune.study import preflight
from tune.study.estimate import StudyEstimate, estimate_study, measure_figures
from tune.study.options import Options
from tune.study.preflight import PreflightError
from tune.study.studies import PROFILES, Study, StudyError, StudyFile, choose_profile


@dataclass(frozen=True)
class Request:
    """What ``check`` found valid: the study for every profile, overrides applied."""

    studies: dict[str, Study]  # profile -> study
    storage: str  # resolved storage root
    resume_path: str | None
    parent_info: dict | None  # the resumed invocation's mlflow_parent.json
    optuna_storage: str | None  # resolved RDB URL of searched studies' Optuna study


@dataclass(frozen=True)
class Plan:
    study: Study  # for the chosen profile, overrides and --data applied
    reason: str  # why this profile
    cluster: Cluster
    mlflow_uri: str
    storage: str
    run_name: str
    resume_path: str | None
    parent_info: dict | None
    overrides: dict[str, Any]  # --set and flag overrides, as given
    seed: int
    notes: tuple[str, ...] = ()  # printed with the plan
    vgg_pretrained: bool = True  # ImageNet VGG19 weights found on this (the driver's) node
    optuna_storage: str | None = None  # where the Optuna study lives; None: no Optuna search
    estimate: StudyEstimate | str | None = None  # GPU studies: time and memory (or why not)
    blockers: tuple[str, ...] = ()  # dry runs: what would stop a real run on this cluster

    @property
    def optuna_info(self) -> dict[str, str]:
        """Parent-run tags and mlflow_parent.json keys that find the Optuna study again."""
        if self.optuna_storage is None:
            return {}
        return {"optuna_storage": self.optuna_storage, "optuna_study": self.run_name}

    @property
    def study_root(self) -> str:
        return f"{self.storage}/{self.study.name}"

    @property
    def experiment_dir(self) -> str:
        return self.resume_path or f"{self.study_root}/{self.run_name}"

    @property
    def pretrain_cpus(self) -> float:
        """The warm start holds back every trial slot: it may use their CPUs (on one node)."""
        largest = max(
            (n.get("Resources", {}).get("CPU", 0.0) for n in self.cluster.nodes if n.get("Alive")),
            default=1.0,
        )
        wanted = self.study.cpus_per_trial * self.study.max_concurrent
        return max(self.study.cpus_per_trial, min(wanted, largest))

    @property
    def epochs(self) -> int:
        return TrainConfig.from_dict(self.study.config).epochs

    def describe(self) -> str:
        s = self.study
        cfg, full = TrainConfig.from_dict(s.config), TrainConfig()
        model = f"n_feats {cfg.n_feats}, residual blocks {cfg.num_res_blocks}"
        if (cfg.n_feats, cfg.num_res_blocks) != (full.n_feats, full.num_res_blocks):
            model += f" (reduced width; the seed uses {full.n_feats}, {full.num_res_blocks})"
        objectives = ", ".join(f"{o.metric} ({o.mode})" for o in s.objectives)
        seeds = f" × {s.repeats} seeds" if s.repeats > 1 else ""
        lines = [
            f"profile {s.profile!r} runs: {self.reason}",
            f"study      {s.name}: {s.description}",
            f"model      TTSR {model}",
            f"data       {s.config.get('data') or 'built-in sample set'}",
            f"search     {search_kind(s)}; objectives {objectives}; scheduler {s.scheduler}",
            f"trials     {s.num_trials()} (num_samples {s.num_samples}{seeds}), at most "
            f"{s.max_concurrent} at a time, "
            f"{cfg.epochs} epoch(s) max each",
            f"resources  {s.cpus_per_trial:g} CPU + {s.gpus_per_trial:g} GPU per trial",
            f"loader     {loader_workers(s)}",
        ]
        if s.is_grid:
            keys = sorted({k for c in s.cases for k in c} | set(s.search))
            for i, point in enumerate(s.trial_configs()):
                lines.append(f"  point {i}: " + ", ".join(f"{k}={point.get(k)}" for k in keys))
        else:
            lines += [f"  {key}: {dim.kind} {list(dim.values)}" for key, dim in s.search.items()]
        if s.report_kind:
            about = f" against {s.report_param}" if s.report_param else ""
            lines.append(f"report     {s.report_kind}{about}")
        if self.overrides:
            given = ", ".join(f"{k}={v!r}" for k, v in self.overrides.items())
            lines.append(f"overrides  {given}")
        lines += [
            f"fixed      {s.config}",
            f"ray        {self.cluster.address}",
            f"mlflow     {self.mlflow_uri} (experiment {s.name!r})",
            f"storage    {self.experiment_dir}",
        ]
        if self.optuna_storage:
            lines.append(f"optuna     {self.optuna_storage} (study {self.run_name!r})")
        if isinstance(self.estimate, StudyEstimate):
            lines += self.estimate.lines()
        elif self.estimate:
            lines.append(f"estimate   none: {self.estimate}")
        lines += [*self.notes, *(f"would stop {b}" for b in self.blockers)]
        return "\n".join(lines)


def check(studies: StudyFile, options: Options) -> Request:
    if options.study not in studies:
        known = ", ".join(studies)
        raise StudyError(f"unknown study {options.study!r}; known studies: {known}")
    by_profile = studies.resolve(
        options.study, overrides=options.overrides(), labels=options.override_labels()
    )
    root = storage.resolve_storage(options.storage)
    # Only checked here; created once every other check has passed (nothing half-written).
    storage.check_storage(root, create=False)
    preflight.check_mlflow_uri(options.mlflow_uri)
    if options.address:
        preflight.check_ray_address(options.address)
    data = options.data
    if data is not None and not storage.is_remote(data) and not Path(data).exists():
        raise PreflightError(f"--data {data}: no such directory")
    resume_path = parent_info = None
    if options.resume:
        resume_path = storage.find_resume_path(options.resume, f"{root}/{options.study}")
        parent_info = storage.read_parent_info(resume_path)
    optuna_url = None
    if options.optuna_storage is not None or any(_uses_optuna(s) for s in by_profile.values()):
        recorded = (parent_info or {}).get("optuna_storage")  # the resumed study's, if any
        given = recorded or options.optuna_storage
        optuna_url = optuna_store.resolve_url(given, options.mlflow_uri)
    if options.measure:
        import torch

        if not torch.cuda.is_available():
            raise PreflightError(
                "--measure: no CUDA GPU on this machine (the plan's estimate then "
                "comes from tune/figures.json without it)"
            )
    certain = _certain_profile(options, by_profile, parent_info)
    if certain == "seed" and not options.dry_run:  # refuse before Ray starts
        vgg_weights(by_profile["seed"], options)
    return Request(by_profile, root, resume_path, parent_info, optuna_url)


def _uses_optuna(study: Study) -> bool:
    return bool(study.search) and not study.is_grid


def _certain_profile(
    options: Options, by_profile: dict[str, Study], info: dict | None
) -> str | None:
    """The profile when it is known without a cluster: given, resumed, or a local Ray whose
    GPUs this machine shows."""
    if info is not None:
        return info["profile"]
    if options.profile is None and not options.local_ray:
        return None  # the cluster's GPUs decide
    return choose_profile(
        requested=options.profile,
        data=options.data,
        seed_data=by_profile["seed"].data,
        cluster_gpus=local_gpu_count(),
    )[0]


def vgg_weights(study: Study, options: Options) -> tuple[bool, str | None]:
    """(ImageNet VGG19 weights found, a note for the plan). A seed-profile quality study
    refuses to start without them unless --allow-random-vgg; a demo runs and says so."""
    from ttsr.vgg import VGGWeightsError, find_imagenet_weights, missing_weights_message

    try:
        found = find_imagenet_weights(study.config.get("vgg_weights")) is not None
    except VGGWeightsError as e:
        raise PreflightError(str(e)) from None
    if found or not study.needs_imagenet_vgg:
        return found, None
    if study.profile == "seed" and not options.allow_random_vgg:
        raise PreflightError(
            f"study {study.name!r} (seed profile) needs ImageNet VGG19 weights for its texture "
            f"extractor, perceptual losses and val_perceptual: {missing_weights_message()}"
        )
    why = "--allow-random-vgg given" if study.profile == "seed" else "demo profile"
    return False, (
        f"note: VGG19 ImageNet weights not found ({why}): the texture extractor, perceptual "
        "losses and val_perceptual use RANDOM VGG features, so the numbers show the machinery "
        "working, not TTSR's quality (`python -m ttsr.vgg download` fetches the weights)"
    )


def make(request: Request, options: Options, cluster: Cluster) -> Plan:
    """The plan for this cluster: the profile rule (or the resumed invocation's profile), the
    data path, and a check that a trial fits on some node (in a dry run: a blocker)."""
    info = request.parent_info
    notes, blockers = [], []
    if info is not None:
        profile, reason, data = info["profile"], f"resuming {request.resume_path}", info.get("data")
        if info["tracking_uri"] != options.mlflow_uri:
            notes.append(f"note: the parent run lives in {info['tracking_uri']}; using that store")
    else:
        profile, reason = choose_profile(
            requested=options.profile,
            data=options.data,
            seed_data=request.studies["seed"].data,
            cluster_gpus=cluster.gpus,
        )
        data = options.data
    study = request.studies[profile]
    with _blocking(options, blockers):
        study = _with_data(study, data, given=options.data is not None)
    vgg_found = False
    with _blocking(options, blockers):
        vgg_found, vgg_note = vgg_weights(study, options)
        notes += [vgg_note] if vgg_note else []
    with _blocking(options, blockers):
        check_loader_workers(study)
    with _blocking(options, blockers):
        preflight.check_resources(
            list(cluster.nodes),
            gpus_per_trial=study.gpus_per_trial,
            cpus_per_trial=study.cpus_per_trial,
            source=f"profile {profile}",
        )
    return Plan(
        study=study,
        reason=reason,
        cluster=cluster,
        mlflow_uri=info["tracking_uri"] if info else options.mlflow_uri,
        storage=request.storage,
        run_name=info["run_name"] if info else time.strftime(f"{study.name}-%Y%m%d-%H%M%S"),
        resume_path=request.resume_path,
        parent_info=info,
        overrides=options.overrides(),
        seed=options.seed,
        notes=tuple(notes + _optuna_notes(study, request, options)),
        vgg_pretrained=vgg_found,
        optuna_storage=_optuna_storage(study, request),
        estimate=_estimate(study, cluster, measure=options.measure),
        blockers=tuple(blockers),
    )


@contextmanager
def _blocking(options: Options, blockers: list[str]) -> Iterator[None]:
    """A check whose failure stops a real run; a dry run records it and plans on."""
    try:
        yield
    except PreflightError as e:
        if not options.dry_run:
            raise
        blockers.append(str(e))


def _optuna_storage(study: Study, request: Request) -> str | None:
    info = request.parent_info
    if not _uses_optuna(study) or (info is not None and "optuna_storage" not in info):
        return None  # not searched, or resumed from an invocation that kept it in memory
    return request.optuna_storage


def _optuna_notes(study: Study, request: Request, options: Options) -> list[str]:
    info = request.parent_info or {}
    out = []
    if _uses_optuna(study) and request.parent_info is not None and "optuna_storage" not in info:
        out.append("note: the resumed invocation keeps its Optuna study in memory (no storage)")
    recorded = info.get("optuna_storage")
    if recorded and options.optuna_storage and options.optuna_storage != recorded:
        out.append(f"note: the resumed Optuna study lives in {recorded}; using that storage")
    url = _optuna_storage(study, request)
    if url and url.startswith("sqlite") and (options.address or "").startswith("ray://"):
        out.append(
            "note: with ray:// Tune's driver runs on the head node, so the SQLite Optuna "
            "storage is written there; give --optuna-storage a database server URL to see it here"
        )
    return out


def _estimate(study: Study, cluster: Cluster, *, measure: bool) -> StudyEstimate | str | None:
    """Time and memory of a GPU study's trials: from tune/figures.json, or measured here."""
    if study.gpus_per_trial <= 0:
        return None
    return estimate_study(study, cluster, sets=[measure_figures(study)] if measure else None)


def _with_data(study: Study, data: str | None, *, given: bool) -> Study:
    """The data path into the config: --data, else the seed profile's own path."""
    if data is None and study.profile == "seed":
        data = study.data
    if data is None:
        return study
    if not storage.is_remote(data):
        if not Path(data).exists():
            where = "--data" if given else f"profiles.seed.data of {study.name!r}"
            raise PreflightError(f"{where} {data}: no such directory")
        data = str(Path(data).resolve())
    # the warm start trains on the same data as the trials
    pretrain = None if study.pretrain is None else {**study.pretrain, "data": data}
    return replace(study, config={**study.config, "data": data}, data=data, pretrain=pretrain)


# ------------------------------------------------------------------------------------------------
def search_kind(study: Study, *, short: bool = False) -> str:
    if study.is_grid:
        return "grid" if short else "grid (tune.grid_search, Tune's default searcher)"
    if study.search:
        return "Optuna multi-objective" if study.multi_objective else "Optuna"
    return "fixed config"


def _worker_settings(study: Study) -> set:
    """Every num_workers a trial of ``study`` may get (None = automatic)."""
    values = {study.config.get("num_workers")}
    values |= {case["num_workers"] for case in study.cases if "num_workers" in case}
    if "num_workers" in study.search:
        values |= set(study.search["num_workers"].values)
    return values


def check_loader_workers(study: Study) -> None:
    """A GPU trial with 0 loader workers would decode its PNGs inside the step loop: refused."""
    if study.gpus_per_trial > 0 and 0 in _worker_settings(study):
        raise PreflightError(
            f"num_workers 0 in study {study.name!r}: a GPU trial would decode images inside its "
            "step loop; set num_workers >= 1 or leave it out (automatic: at least 1 on CUDA)"
        )


def loader_workers(study: Study) -> str:
    """The plan's line: DataLoader workers per trial, as each trial will resolve them."""
    cuda = study.gpus_per_trial > 0
    auto = auto_num_workers(max(1, int(study.cpus_per_trial)), cuda=cuda)
    counts = sorted(auto if v is None else v for v in _worker_settings(study))
    rule = "automatic: CPUs per trial - 1, at least 1 on a GPU" if cuda else "automatic on CPU"
    return f"{', '.join(map(str, counts))} worker(s) per trial ({rule})"


def list_studies(studies: StudyFile) -> str:
    """``--list``: one line per study: name, report kind, search, trials per profile."""
    rows = []
    for name, by_profile in studies.all().items():
        demo = by_profile["demo"]
        trials = ", ".join(f"{p} {by_profile[p].num_trials()}" for p in reversed(PROFILES))
        kind, search = demo.report_kind or "-", search_kind(demo, short=True)
        rows.append((name, kind, search, f"trials: {trials}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
        for r in rows
    )
