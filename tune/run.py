"""Run one study from experiments.yaml on Ray Tune, tracked in MLflow.

    python tune/run.py --study loss-weights            # demo profile on a laptop
    python tune/run.py --study train-time --data data/ffhq --address HEAD:6379 \\
        --mlflow-uri http://mlflow:5000 --storage s3://bucket/ray_results
    python tune/run.py --study loss-weights --dry-run  # the plan; starts nothing
    python tune/run.py --study loss-weights --set lr=3e-4 --set repeats=2
    python tune/run.py --study loss-weights --resume   # continue the latest invocation
    python tune/run.py --list                          # the studies, one line each

Everything is validated before anything starts; every error is one line on stderr and an exit
code (`ttsr.cli_errors`; bad input: 2), unless --debug. Schema and profile rule: docs/STUDIES.md.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

if __name__ == "__main__":
    # `python tune/run.py` puts tune/, not the repo, first on sys.path: import ttsr and tune
    # from this checkout (the local Ray's workers get the same through PYTHONPATH).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ttsr.cli_errors import EXIT_INTERRUPTED, EXIT_USAGE, run_cli  # noqa: E402
from ttsr.errors import first_line  # noqa: E402
from tune.execution import cluster, environment, pretrain, storage  # noqa: E402
from tune.search import optuna_store
from tune.study import plan
from tune.study.options import Options, parse_options  # noqa: E402
from tune.study.preflight import PreflightError, mlflow_ui_command  # noqa: E402
from tune.study.studies import StudyError, StudyFile  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: _main(argv), argv=argv)


def _main(argv: list[str] | None) -> int:
    started = time.monotonic()
    try:
        options = parse_options(argv)
        environment.configure(local_ray=options.local_ray)  # before Ray/MLflow are imported
        studies = StudyFile.load(options.experiments)  # the one parse of experiments.yaml
        if options.list_studies:
            print(plan.list_studies(studies))
            return 0
        request = plan.check(studies, options)
    except (StudyError, PreflightError) as e:
        return fail(e)

    with cluster.connect(options) as nodes:
        try:
            the_plan = plan.make(request, options, nodes)
            if not options.dry_run:  # the first thing written, once every check has passed
                storage.check_storage(request.storage, create=True)
                if the_plan.optuna_storage:
                    resuming = the_plan.parent_info is not None
                    optuna_store.connect(
                        the_plan.optuna_storage, the_plan.run_name, resuming=resuming
                    )
        except (StudyError, PreflightError) as e:
            return fail(e)
        print(the_plan.describe())
        if options.dry_run:
            print("dry run: nothing started")
            return fail(the_plan.blockers[0]) if the_plan.blockers else 0
        try:
            return run_study(the_plan, options, started)
        except KeyboardInterrupt:
            print("error: interrupted; the study can continue with --resume", file=sys.stderr)
            return EXIT_INTERRUPTED


def run_study(the_plan: plan.Plan, options: Options, started: float) -> int:
    """Fit the Tuner inside the parent run, close the trials' runs, then the report."""
    import ray

    from tune import report
    from tune.execution import full_storage
    from tune.execution.parent_run import FINISHED, comparison_url

    environment.one_line_ray_logs()

    study = the_plan.study
    with open_parent_run(the_plan, options) as parent:
        if the_plan.parent_info is None:  # what --resume reads to find this run again
            info = {**parent.info, **the_plan.optuna_info}
            storage.write_json(f"{the_plan.experiment_dir}/{storage.PARENT_FILE}", info)
        print(f"mlflow parent run {parent.run_id} (experiment {study.name!r})")
        meta = parent.trial_meta(study)
        study = pretrain.warm_start(
            study, study_root=the_plan.study_root, meta=meta, cpus=the_plan.pretrain_cpus
        )
        the_plan = replace(the_plan, study=study)
        fit(the_plan, meta)
        trial_status = trial_states(the_plan)
        status = parent.finish(trial_status)
        if full_storage.full_trials():  # one line, exit 74; the parent run ends FAILED
            raise full_storage.storage_full_error(the_plan.storage)
        unfinished = [s for s in trial_status.values() if s not in ("TERMINATED", "ERROR")]
        if unfinished:
            print(f"study interrupted, {len(unfinished)} trial(s) unfinished; --resume continues")
        ray.shutdown()  # free the CPUs before the report
        if not options.no_report:
            out = report.make_report(
                the_plan.experiment_dir,
                study=study,
                tracking_uri=parent.tracking_uri,
                parent_run_id=parent.run_id,
                notes=[n.removeprefix("note: ") for n in the_plan.notes],
            )
            publish_models(out, study.name, parent.tracking_uri)
            print(out.summary)
    elapsed = time.monotonic() - started
    print(f"\nstudy {study.name!r} done in {elapsed:.0f} s ({study.profile} profile)")
    print(f"results:    {the_plan.experiment_dir}")
    print(f"look at it: {mlflow_ui_command(parent.tracking_uri)}")
    print(
        "            then open the trials grouped by configuration (mean over seeds per row): "
        f"{comparison_url(parent.tracking_uri, parent.experiment_id, parent.run_id)}"
    )
    if the_plan.optuna_storage:
        print(f"optuna:     {optuna_store.dashboard_command(the_plan.optuna_storage)}")
    return 0 if status == FINISHED else 1


def trial_states(the_plan: plan.Plan) -> dict[str, str]:
    """Tune trial id -> status from the saved experiment state. A study stopped by a full
    storage may not have saved it whole: then none (the parent run closes every child run
    still RUNNING as KILLED)."""
    from tune.execution import full_storage

    try:
        return storage.trial_states(the_plan.experiment_dir)
    except Exception:
        if not full_storage.full_trials():
            raise
        return {}


def fit(the_plan: plan.Plan, meta: dict[str, str]) -> None:
    """Build the Tuner (or restore the interrupted one) and run every trial."""
    from tune.execution import full_storage, tuner
    from tune.execution.progress import ProgressLines

    environment.quiet_optuna()
    study = the_plan.study
    if the_plan.resume_path:
        print(f"resuming: loading Tune's pickled experiment state from {the_plan.resume_path}")
        t = tuner.restore_tuner(study, meta=meta, path=the_plan.resume_path)
    else:
        progress = ProgressLines(
            metric=study.metric,
            mode=study.mode,
            total=study.num_trials(),
            max_epochs=the_plan.epochs,
            max_concurrent=study.max_concurrent,
            metrics=tuple(o.metric for o in study.objectives),
        )
        t = tuner.build_tuner(
            study,
            meta=meta,
            storage=the_plan.study_root,
            name=the_plan.run_name,
            seed=the_plan.seed,
            callbacks=[progress],
            optuna_storage=the_plan.optuna_storage,
        )
    try:
        t.fit()
    except Exception:
        # After a full storage interrupted the study, Tune may fail to read back the state it
        # could not write whole (EOFError): the driver ends with the storage-full error instead.
        if not full_storage.full_trials():
            raise


def publish_models(out, study_name: str, tracking_uri: str) -> None:
    """Every trial's best checkpoint as an MLflow model (a trial Tune stopped early could not log
    its own), and the study's best trial registered as ``ttsr-<study>``. A failure here (e.g.
    the tracking server is down) is reported in one line; the study's results stand."""
    from ttsr.tracking.mlflow_model import (
        BEST_ALIAS,
        log_missing_models,
        register_best_model,
        registered_name,
    )
    from tune.execution.storage import MLFLOW_RUN_KEY

    trials = out.trials
    if trials.empty or MLFLOW_RUN_KEY not in trials:
        return
    checkpoints = {
        r[MLFLOW_RUN_KEY]: r["best_checkpoint"]
        for _, r in trials.iterrows()
        if r[MLFLOW_RUN_KEY] and r["best_checkpoint"]
    }
    best = out.best or {}
    try:
        log_missing_models(tracking_uri, checkpoints)
        if best.get(MLFLOW_RUN_KEY) and best.get("best_checkpoint"):
            version = register_best_model(
                tracking_uri,
                study_name,
                best[MLFLOW_RUN_KEY],
                checkpoint=best["best_checkpoint"],
                description=f"{best['label']}, kept epoch {best.get('best_epoch')}.\n\n"
                f"{out.answer}",
            )
            name = registered_name(study_name)
            print(
                f"kept model: models:/{name}/{version} = models:/{name}@{BEST_ALIAS} "
                f"({best['label']}; python -m ttsr.infer --checkpoint models:/{name}@{BEST_ALIAS}"
                f" --mlflow-uri {tracking_uri} ...)"
            )
    except Exception as e:  # noqa: BLE001 - the models are a convenience on top of the results
        print(f"warning: could not log or register the models in MLflow ({first_line(e)})")


def open_parent_run(the_plan: plan.Plan, options: Options):
    """A new parent run, or the resumed invocation's."""
    from ttsr.tracking import git_commit
    from tune.execution.parent_run import ParentRun

    if the_plan.parent_info is not None:
        return ParentRun.reopen(the_plan.parent_info)
    warnings = [n.removeprefix("note: ") for n in the_plan.notes if "VGG19" in n]
    tags = {
        "vgg_pretrained": str(the_plan.vgg_pretrained).lower(),
        **({"warning": warnings[0]} if warnings else {}),
        "allow_random_vgg": str(options.allow_random_vgg).lower(),
        "git_commit": git_commit(environment.REPO) or "unknown",
        "ray_address": the_plan.cluster.address,
        "storage": the_plan.experiment_dir,
        **the_plan.optuna_info,
    }
    return ParentRun.start(
        the_plan.mlflow_uri,
        the_plan.study,
        run_name=the_plan.run_name,
        tags=tags,
        overrides=the_plan.overrides,
    )


def fail(error: Exception | str) -> int:
    print(f"error: {error}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
