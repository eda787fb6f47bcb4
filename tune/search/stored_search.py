"""Ray's ``OptunaSearch`` with its Optuna study in an RDB storage, kept consistent when a driver
is killed and ``--resume`` restores the searcher from its last checkpoint (the pickled searcher,
written with Tune's experiment state every ``TUNE_GLOBAL_CHECKPOINT_S``) while the storage holds
every trial asked since. `StoredOptunaSearch`:

- tags each Optuna trial with the Tune trial id that asked for it (user attr ``tune_trial_id``,
  as the MLflow child runs' tag ``trial_id``);
- on restore, FAILs the storage's RUNNING trials the checkpoint does not know (user attr
  ``lost``): Tune suggests a new trial in their place, and they would stay RUNNING for ever;
- on restore, remembers the trials the checkpoint holds as running that the storage already
  has finished: Tune reruns them from their checkpoints, and their results are not sent again
  (Optuna refuses to update a finished trial, which ended the resumed study with a TuneError).

A trial asked *and* completed between the last checkpoint and the kill stays COMPLETE; Tune
runs a new one in its place.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

from ray.tune.search.optuna import OptunaSearch

log = logging.getLogger(__name__)

TUNE_TRIAL_ATTR = "tune_trial_id"
LOST_ATTR = "lost"
READ_ME = (  # the study's user attr, for whoever opens it in optuna-dashboard
    "One Optuna trial per configuration; with repeats its values are the mean over its seeds of "
    "each objective at the trial's kept epoch (the numbers of the report's groups.parquet and of "
    "the MLflow runs' best_<metric>). The user attrs mlflow_config_tag and mlflow_runs lead to "
    "its MLflow runs. Parameter importance needs far more trials than parameters: with a "
    "handful (the demo runs 2) it means nothing."
)
LOST_WHY = "asked after the driver's last checkpoint; the resumed study runs a new trial instead"


class StoredOptunaSearch(OptunaSearch):
    """``OptunaSearch(storage=RDBStorage(storage_url), study_name=study_name, ...)``."""

    def __init__(
        self,
        *,
        storage_url: str,
        study_name: str,
        trial_attrs: dict[str, str] | None = None,
        label_keys: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        from optuna.storages import RDBStorage

        super().__init__(storage=RDBStorage(storage_url), study_name=study_name, **kwargs)
        self.trial_attrs = dict(trial_attrs or {})  # on every trial: where its MLflow runs are
        self.label_keys = label_keys  # the keys of the MLflow `config` tag of a trial's runs
        self._finished_in_storage: dict[str, Any] = {}  # Tune trial id -> FrozenTrial

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        import optuna

        # The start points go into the study once, when it is created: a searcher set up again
        # on an existing study (a resumed driver) would enqueue them a second time.
        if self._points_to_evaluate and (
            self._study_name in optuna.get_all_study_names(self._storage)
        ):
            self._points_to_evaluate = []
        done = super().set_search_properties(metric, mode, config, **spec)
        if done and self._ot_study is not None:  # optuna-dashboard names the objectives
            metrics = self._metric if isinstance(self._metric, list) else [self._metric]
            with warnings.catch_warnings():  # "experimental" since Optuna 3.2, still is
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self._ot_study.set_metric_names([f"{m} (kept epoch)" for m in metrics])
            self._ot_study.set_user_attr("read_me", READ_ME)
        return done

    def suggest(self, trial_id: str) -> dict | None:
        new = trial_id not in self._ot_trials
        config = super().suggest(trial_id)
        if new and trial_id in self._ot_trials:
            trial = self._ot_trials[trial_id]
            for key, value in {TUNE_TRIAL_ATTR: trial_id, **self.trial_attrs}.items():
                trial.set_user_attr(key, value)
            if self.label_keys is not None and config is not None:
                from tune.reporting.groups import label

                values = {k: config[k] for k in self.label_keys if k in config}
                trial.set_user_attr("mlflow_config_tag", label(values))
        return config

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self.fail_lost_trials()
        self._finished_in_storage = self.finished_in_storage()

    def finished_in_storage(self) -> dict[str, Any]:
        """The storage's finished trials (FrozenTrial) that this searcher holds as running,
        by Tune trial id. A finished trial never changes, so this is read once, on restore."""
        stored = {t.number: t for t in self._ot_study.get_trials(deepcopy=False)}
        return {
            trial_id: stored[trial.number]
            for trial_id, trial in self._ot_trials.items()
            if trial_id not in self._completed_trials
            and trial.number in stored
            and stored[trial.number].state.is_finished()
        }

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self._finished_in_storage:
            super().on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        stored = self._finished_in_storage.get(trial_id)
        if stored is None:
            super().on_trial_complete(trial_id, result, error)
            return
        self._completed_trials.add(trial_id)
        value = (result or {}).get(self.metric) if isinstance(self.metric, str) else None
        # value first: FrozenTrial.value raises for a multi-objective trial (value is None then)
        if (
            value is not None
            and stored.value is not None
            and not math.isclose(stored.value, value, rel_tol=1e-6, abs_tol=1e-9)
        ):
            log.warning(
                "Optuna trial %d keeps %s = %s from before the driver was killed; "
                "its rerun ended at %s",
                stored.number,
                self.metric,
                stored.value,
                value,
            )

    def fail_lost_trials(self) -> list[int]:
        """FAIL the storage's RUNNING trials this searcher never asked for; their numbers."""
        import optuna
        from optuna.trial import TrialState

        study = self._ot_study
        known = {t.number for t in self._ot_trials.values()}
        lost = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.number not in known
        ]
        for frozen in lost:
            # A Trial handle for a trial of this study asked elsewhere (by the killed driver);
            # Optuna's public Trial takes the storage's trial id.
            optuna.Trial(study, frozen._trial_id).set_user_attr(LOST_ATTR, LOST_WHY)
            study.tell(frozen.number, state=TrialState.FAIL)
        return [t.number for t in lost]
