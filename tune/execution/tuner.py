"""Turn a resolved study into a Ray Tune ``Tuner`` (search space, searcher, scheduler, configs).

Grids (``cases`` or ``grid`` dimensions) use ``grid_search`` and Tune's default searcher;
searched studies a seeded ``OptunaSearch`` (multi-objective with two objectives) under a
``ConcurrencyLimiter``, its Optuna study in an RDB storage when one is given
(``tune.search.stored_search``). ASHA only where the study says ``scheduler: asha``. Tune's own
console output is off (``verbose=0``): the caller's callbacks print the progress.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ray import tune as ray_tune
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter, Repeater, Searcher
from ray.tune.search.optuna import OptunaSearch

from ttsr import names
from tune.execution.full_storage import StopWhenFull
from tune.execution.trainable import CASE_KEY, train_trial
from tune.execution.trial_record import CsvRecord, JsonRecord
from tune.reporting.formatting import number
from tune.search.stored_search import StoredOptunaSearch
from tune.study.studies import Study


def param_space(study: Study) -> dict[str, Any]:
    """What Tune varies per trial (the fixed config travels separately). With ``repeats`` a
    grid or fixed-config study also varies ``seed``; a searched one repeats in the searcher."""
    space: dict[str, Any] = {}
    if study.repeats > 1 and (study.is_grid or not study.search):
        base = int(study.config.get("seed", 0))
        space["seed"] = ray_tune.grid_search([base + i for i in range(study.repeats)])
    if study.cases:
        space[CASE_KEY] = ray_tune.grid_search([dict(c) for c in study.cases])
    for key, dim in study.search.items():
        if dim.kind in ("uniform", "loguniform"):  # (low, high)
            space[key] = getattr(ray_tune, dim.kind)(*dim.values)
        else:
            sampler = ray_tune.grid_search if dim.kind == "grid" else ray_tune.choice
            space[key] = sampler(list(dim.values))
    return space


def searcher(
    study: Study,
    *,
    seed: int,
    optuna_storage: str | None = None,
    optuna_study: str = "optuna",
    meta: dict[str, Any] | None = None,
) -> ConcurrencyLimiter | None:
    """Optuna for sampled spaces (each suggestion repeated over seeds when the study says
    ``repeats``); None (Tune's default) for grids and fixed-config studies. With
    ``optuna_storage`` (an RDB URL) the Optuna study ``optuna_study`` lives there; else in
    memory."""
    if study.is_grid or not study.search:
        return None
    # Optuna is told a quality metric's value at the trial's kept epoch (``best_val_psnr`` for
    # ``val_psnr``: the number the report and the MLflow run show), a speed metric as reported.
    metrics = [names.kept_value(o.metric) for o in study.objectives]
    modes = [o.mode for o in study.objectives]
    options: dict[str, Any] = dict(
        metric=metrics if study.multi_objective else metrics[0],
        mode=modes if study.multi_objective else modes[0],
        points_to_evaluate=[dict(p) for p in study.start_points] or None,
        seed=seed,
    )
    search: Searcher = (
        StoredOptunaSearch(
            storage_url=optuna_storage,
            study_name=optuna_study,
            trial_attrs=mlflow_attrs(meta or {}),
            label_keys=list(study.search),
            **options,
        )
        if optuna_storage
        else OptunaSearch(**options)
    )
    if study.repeats > 1:
        search = SeedRepeater(search, repeat=study.repeats, metrics=metrics)
    return ConcurrencyLimiter(search, max_concurrent=study.max_concurrent)


class SeedRepeater(Repeater):
    """Ray's `Repeater` (which averages a single metric only) averaging every objective: each
    suggestion runs ``repeat`` times, trial i of a group with the study's seed + i (the
    trainable reads Tune's ``__trial_index__``), and Optuna is told the mean of each objective
    once the whole group has finished. (Grid and fixed-config studies get a seed grid instead.)
    """

    def __init__(self, searcher: Searcher, *, repeat: int, metrics: list[str]) -> None:
        super().__init__(searcher, repeat=repeat, set_index=True)
        self.metrics = list(metrics)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        group = self._trial_id_to_group.get(trial_id)
        if group is None:  # not one of ours (cannot happen with Tune's own bookkeeping)
            return
        group.report(trial_id, {m: number((result or {}).get(m)) for m in self.metrics})
        if group.finished_reporting():
            mean = {m: _mean([s[m] for s in group.scores()]) for m in self.metrics}
            self.searcher.on_trial_complete(group.primary_trial_id, result=mean, **kwargs)


def _mean(values: list[float | None]) -> float:
    """The mean of the finite ones (`number` made the rest None); NaN when there are none."""
    finite = [v for v in values if v is not None]
    return sum(finite) / len(finite) if finite else math.nan


def mlflow_attrs(meta: dict[str, Any]) -> dict[str, str]:
    """What an Optuna trial says about its MLflow runs: the parent run and the UI link to the
    study's trials grouped by configuration (the trial's runs carry the `config` tag named in
    its ``mlflow_config_tag``)."""
    if not meta.get("parent_run_id"):
        return {}
    from tune.execution.parent_run import comparison_url

    return {
        "mlflow_parent_run_id": meta["parent_run_id"],
        "mlflow_runs": comparison_url(
            meta["tracking_uri"], meta["experiment_id"], meta["parent_run_id"]
        ),
    }


def scheduler(study: Study) -> AsyncHyperBandScheduler | FIFOScheduler:
    if study.scheduler == "asha":
        return AsyncHyperBandScheduler(
            time_attr=names.EPOCH,
            metric=study.metric,
            mode=study.mode,
            max_t=max(1, int(study.config.get("epochs", 10))),
            grace_period=study.grace_period,
            reduction_factor=2,
        )
    return FIFOScheduler()


def trainable(study: Study, *, meta: dict[str, Any]):
    """The resource-wrapped trainable; rebuilt identically for Tuner.restore."""
    fn = ray_tune.with_parameters(train_trial, base=dict(study.config), meta=dict(meta))
    return ray_tune.with_resources(fn, {"cpu": study.cpus_per_trial, "gpu": study.gpus_per_trial})


def run_config(
    study: Study, *, storage: str, name: str, callbacks: Sequence[ray_tune.Callback] = ()
) -> ray_tune.RunConfig:
    return ray_tune.RunConfig(
        name=name,
        storage_path=storage,
        verbose=0,
        # result.json / progress.csv with every epoch once (Tune then adds none of its own
        # loggers of those kinds, which can lose some when a node dies); a full storage
        # interrupts the study
        callbacks=[JsonRecord(), CsvRecord(), StopWhenFull(), *callbacks],
        checkpoint_config=ray_tune.CheckpointConfig(
            num_to_keep=2,
            # the metric the loop's early stopping watches (val_psnr or val_psnr_<mode>)
            checkpoint_score_attribute=study.config.get("early_stop_metric", names.VAL_PSNR),
            checkpoint_score_order="max",
        ),
        # A crashed trial restarts from its last reported checkpoint.
        failure_config=ray_tune.FailureConfig(max_failures=2),
    )


def build_tuner(
    study: Study,
    *,
    meta: dict[str, Any],
    storage: str,
    name: str,
    seed: int = 0,
    callbacks: Sequence[ray_tune.Callback] = (),
    optuna_storage: str | None = None,
) -> ray_tune.Tuner:
    """The Tuner of a new invocation ``name``; its Optuna study (if any) is named ``name``."""
    search_alg = searcher(
        study, seed=seed, optuna_storage=optuna_storage, optuna_study=name, meta=meta
    )
    tune_config = ray_tune.TuneConfig(
        search_alg=search_alg,
        scheduler=scheduler(study),
        # a searcher's trials: every suggestion times its repeats; a grid repeats by its seeds
        num_samples=study.num_samples * (study.repeats if search_alg is not None else 1),
        # grids: the limiter is Tune's own cap (there is no searcher to wrap)
        max_concurrent_trials=None if search_alg is not None else study.max_concurrent,
        trial_name_creator=lambda t: f"{study.name}_{t.trial_id}",
        trial_dirname_creator=lambda t: f"trial_{t.trial_id}",
        # A slot's next trial runs in the process its last one ran in: no new interpreter
        # importing torch, Ray and MLflow (nor a new CUDA context) per trial. Safe because
        # ttsr.train sets every process-wide state it reads per run (seeds, backend flags):
        # tests/test_train.py::test_a_run_after_another_in_the_same_process_is_unchanged.
        reuse_actors=True,
    )
    return ray_tune.Tuner(
        trainable(study, meta=meta),
        param_space=param_space(study),
        tune_config=tune_config,
        run_config=run_config(study, storage=storage, name=name, callbacks=callbacks),
    )


def restore_tuner(study: Study, *, meta: dict[str, Any], path: str) -> ray_tune.Tuner:
    """Continue a study from its Tune experiment directory (Tune's pickled state, which holds
    the RunConfig and its callbacks too)."""
    return ray_tune.Tuner.restore(
        path, trainable=trainable(study, meta=meta), resume_errored=True, resume_unfinished=True
    )
