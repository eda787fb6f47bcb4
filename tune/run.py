"""Run one study from experiments.yaml on Ray Tune, tracked in MLflow.

    python tune/run.py --study loss-weights            # demo profile on a laptop
    python tune/run.py --study train-time --data data/ffhq --address HEAD:6379 \\
        --mlflow-uri http://mlflow:5000 --storage s3://bucket/ray_results
    python tune/run.py --study loss-weights --dry-run  # the plan; starts nothing
    python tune/run.py --study loss-weights --resume   # continue the latest invocation

Everything is validated before anything starts; a bad flag, file or address is one line on
stderr and exit code 2. Schema and profile rule: docs/STUDIES.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python tune/run.py` puts tune/ (not the repo) on sys.path
    sys.path.insert(0, str(REPO))
# Trial workers of a local Ray inherit this environment: let them import ttsr and tune from this
# checkout. (On a remote cluster the package must be installed on every node.)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
)

# Ray's console: the classic trial table (CLIReporter) instead of the per-result stream, and
# repeated worker log lines folded.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
# Write Tune's experiment state often, so a driver killed mid-study can be resumed.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")

import logging  # noqa: E402

# No "Creating initial MLflow database tables" / "A new study created" chatter on the console.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("optuna").setLevel(logging.WARNING)

from tune import preflight  # noqa: E402
from tune.preflight import PreflightError  # noqa: E402
from tune.studies import PROFILES, Study, StudyError, choose_profile, load_study  # noqa: E402

DEFAULT_EXPERIMENTS = REPO / "experiments.yaml"
EXIT_USAGE = 2


class Interrupted(KeyboardInterrupt):
    """SIGTERM to the driver: unwind through the finally blocks that close the MLflow runs."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python tune/run.py",
        description=(
            "Run a study from experiments.yaml on Ray Tune; one MLflow parent run per "
            "invocation, one child run per trial. Profile rule: --profile wins; else 'seed' "
            "when --data is given (or the study's seed data exists) and the cluster has GPUs; "
            "else 'demo'."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--study", required=True, help="study name in experiments.yaml")
    p.add_argument("--profile", choices=PROFILES, default=None, help="force a profile")
    p.add_argument("--data", default=None, help="prepared dataset dir (seed profile)")
    p.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="Ray cluster address (HOST:PORT or ray://HOST:10001; env RAY_ADDRESS); "
        "default: start a local Ray on 127.0.0.1",
    )
    p.add_argument(
        "--mlflow-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI") or preflight.default_mlflow_uri(),
        help="MLflow tracking URI (env MLFLOW_TRACKING_URI)",
    )
    p.add_argument(
        "--storage",
        default="ray_results",
        help="Tune results: local dir (made absolute) or s3://... for multi-node clusters",
    )
    p.add_argument("--experiments", default=str(DEFAULT_EXPERIMENTS), help="studies YAML file")
    p.add_argument("--num-samples", type=int, default=None, help="override the trial count")
    p.add_argument("--max-epochs", type=int, default=None, help="override epochs per trial")
    p.add_argument(
        "--gpus-per-trial", type=float, default=None, help="GPUs per trial (fractions share)"
    )
    p.add_argument("--cpus-per-trial", type=float, default=None, help="CPUs per trial")
    p.add_argument("--max-concurrent", type=int, default=None, help="trials at the same time")
    p.add_argument("--seed", type=int, default=0, help="searcher seed (Optuna)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        metavar="PATH",
        help="continue an interrupted invocation: its Tune experiment dir inside --storage "
        "(default: the latest one of this study); loads Tune's pickled state",
    )
    p.add_argument(
        "--num-cpus", type=int, default=None, help="local Ray only: CPUs it may use (default all)"
    )
    p.add_argument(
        "--ray-temp-dir",
        default=None,
        help="local Ray only: its session/socket dir (keep it short, e.g. /tmp/rt_x)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; start nothing")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.add_argument(
        "--no-dashboard",
        action="store_true",
        help="local Ray only: don't start the Ray dashboard (default: on 127.0.0.1:8265)",
    )
    p.add_argument(
        "--dashboard-port", type=int, default=8265, help="local Ray only: dashboard port"
    )
    return p.parse_args(argv)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


# ------------------------------------------------------------------------------------------------
def check_flags(args: argparse.Namespace) -> None:
    """Flag values, checked before anything is created or started."""
    for flag, value, low in (
        ("--num-samples", args.num_samples, 1),
        ("--max-epochs", args.max_epochs, 1),
        ("--max-concurrent", args.max_concurrent, 1),
    ):
        if value is not None and value < low:
            raise PreflightError(f"{flag} {value}: must be >= {low}")
    if args.gpus_per_trial is not None and args.gpus_per_trial < 0:
        raise PreflightError(f"--gpus-per-trial {args.gpus_per_trial:g}: must be >= 0")
    if args.cpus_per_trial is not None and args.cpus_per_trial <= 0:
        raise PreflightError(f"--cpus-per-trial {args.cpus_per_trial:g}: must be > 0")


def apply_overrides(study: Study, args: argparse.Namespace) -> Study:
    """CLI flags (already checked by check_flags) over the profile's values."""
    config = dict(study.config)
    if args.max_epochs is not None:
        config["epochs"] = args.max_epochs
    data = args.data if args.data is not None else (study.data if study.profile == "seed" else None)
    if data is not None:
        if not preflight.is_remote(data) and not Path(data).exists():
            where = "--data" if args.data is not None else f"profiles.seed.data of {study.name!r}"
            raise PreflightError(f"{where} {data}: no such directory")
        config["data"] = str(Path(data).resolve()) if not preflight.is_remote(data) else data
    return replace(
        study,
        config=config,
        data=data,
        num_samples=args.num_samples or study.num_samples,
        gpus_per_trial=study.gpus_per_trial if args.gpus_per_trial is None else args.gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial or study.cpus_per_trial,
        max_concurrent=args.max_concurrent or study.max_concurrent,
    )


def local_gpu_count() -> int:
    """NVIDIA GPUs a local Ray would see, without starting Ray or importing torch (dry runs)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


def print_plan(study: Study, *, experiment_dir: str, args, address: str) -> None:
    width = study.config.get("n_feats", 64), study.config.get("num_res_blocks", "16+16+8+4")
    kind = (
        "grid (tune.grid_search, Tune's default searcher)"
        if study.is_grid
        else ("Optuna multi-objective" if study.multi_objective else "Optuna")
        if study.search
        else "fixed config"
    )
    objectives = ", ".join(f"{o.metric} ({o.mode})" for o in study.objectives)
    print(f"study      {study.name}: {study.description}")
    print(
        f"model      TTSR n_feats {width[0]}, residual blocks {width[1]}"
        + (" (reduced width; the seed uses 64, 16+16+8+4)" if width != (64, "16+16+8+4") else "")
    )
    print(f"data       {study.config.get('data') or 'built-in sample set'}")
    print(f"search     {kind}; objectives {objectives}; scheduler {study.scheduler}")
    print(
        f"trials     {study.num_trials()} (num_samples {study.num_samples}), at most "
        f"{study.max_concurrent} at a time, {study.config.get('epochs', 10)} epoch(s) max each"
    )
    print(f"resources  {study.cpus_per_trial:g} CPU + {study.gpus_per_trial:g} GPU per trial")
    if study.is_grid:
        for i, point in enumerate(study.trial_configs()):
            keys = sorted({k for c in study.cases for k in c} | set(study.search))
            print(f"  point {i}: " + ", ".join(f"{k}={point.get(k)}" for k in keys))
    else:
        for key, dim in study.search.items():
            print(f"  {key}: {dim.kind} {list(dim.values)}")
    print(f"fixed      {study.config}")
    print(f"ray        {address}")
    print(f"mlflow     {args.mlflow_uri} (experiment {study.name!r})")
    print(f"storage    {experiment_dir}")


# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        from tune.studies import load_file

        if args.study not in load_file(args.experiments):
            known = ", ".join(load_file(args.experiments))
            return fail(f"unknown study {args.study!r}; known studies: {known}")
        load_study(args.experiments, args.study, "demo")  # validates every profile of the study
        check_flags(args)
        storage = preflight.resolve_storage(args.storage)
        # Only checked here; created once every other check has passed (nothing half-written).
        preflight.check_storage(storage, create=False)
        preflight.check_mlflow_uri(args.mlflow_uri)
        if args.address:
            preflight.check_ray_address(args.address)
    except (StudyError, PreflightError) as e:
        return fail(str(e))

    study_root = f"{storage}/{args.study}"
    parent_info: dict[str, Any] | None = None
    resume_path: str | None = None
    if args.resume:
        try:
            resume_path = find_resume_path(args.resume, study_root)
        except PreflightError as e:
            return fail(str(e))
        parent_info = preflight.read_json(f"{resume_path}/{_parent_file()}")
        if parent_info is None:
            return fail(f"--resume {resume_path}: no {_parent_file()} (not made by tune/run.py)")
    if not args.dry_run:
        try:
            preflight.check_storage(storage, create=True)
        except PreflightError as e:
            return fail(str(e))

    # Cluster: connect to the given one, or start a local Ray (not for a dry run: starts nothing).
    if not args.address:
        # A Ray started here serves this machine only: without this, Ray resolves 127.0.0.1 to
        # the machine's outward address and its GCS, raylet and dashboard listen there.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    try:
        if args.address:
            ray.init(address=args.address, log_to_driver=False, logging_level="WARNING")
            nodes, address = ray.nodes(), args.address
        elif args.dry_run:
            gpus = local_gpu_count()
            nodes = [{"Alive": True, "Resources": {"CPU": os.cpu_count() or 1, "GPU": gpus}}]
            address = "a local Ray on 127.0.0.1 (not started: dry run)"
        else:
            context = ray.init(
                _node_ip_address="127.0.0.1",
                include_dashboard=not args.no_dashboard,
                dashboard_host="127.0.0.1",
                dashboard_port=args.dashboard_port,
                log_to_driver=False,  # trial output goes to the trial logs; the table is enough
                logging_level="WARNING",
                num_cpus=args.num_cpus,
                _temp_dir=args.ray_temp_dir,
            )
            nodes, address = ray.nodes(), "local Ray on 127.0.0.1 (started by this command)"
            if not args.no_dashboard:
                url = context.dashboard_url or f"127.0.0.1:{args.dashboard_port}"
                print(f"Ray dashboard: http://{url}", flush=True)
        cluster_gpus = sum(n.get("Resources", {}).get("GPU", 0) for n in nodes if n.get("Alive"))

        try:
            if parent_info is not None:
                profile, reason = parent_info["profile"], f"resuming {resume_path}"
                args.data = parent_info.get("data")
            else:
                seed_study = load_study(args.experiments, args.study, "seed")
                profile, reason = choose_profile(
                    requested=args.profile,
                    data=args.data,
                    seed_data=seed_study.data,
                    cluster_gpus=cluster_gpus,
                )
            print(f"profile {profile!r} runs: {reason}")
            study = apply_overrides(load_study(args.experiments, args.study, profile), args)
            preflight.check_resources(
                nodes,
                gpus_per_trial=study.gpus_per_trial,
                cpus_per_trial=study.cpus_per_trial,
                source=f"profile {profile}",
            )
        except (StudyError, PreflightError) as e:
            return fail(str(e))

        run_name = time.strftime(f"{study.name}-%Y%m%d-%H%M%S")
        experiment_dir = resume_path or f"{study_root}/{run_name}"
        print_plan(study, experiment_dir=experiment_dir, args=args, address=address)
        if args.dry_run:
            print("dry run: nothing started")
            return 0
        return run_study(
            study,
            args=args,
            address=address,
            study_root=study_root,
            run_name=run_name,
            resume_path=resume_path,
            parent_info=parent_info,
            started=started,
        )
    finally:
        if ray.is_initialized():
            ray.shutdown()


def _parent_file() -> str:
    from tune.parent_run import PARENT_FILE

    return PARENT_FILE


def find_resume_path(resume: str, study_root: str) -> str:
    """The experiment dir to resume: given (must lie inside this study's storage) or latest."""
    from ray import tune

    if resume == "latest":
        if preflight.is_remote(study_root):
            raise PreflightError("--resume: give the experiment path when --storage is remote")
        root = Path(study_root)
        runs = sorted(
            (p for p in root.glob("*/") if (p / _parent_file()).exists()),
            key=lambda p: p.stat().st_mtime,
        )
        if not runs:
            raise PreflightError(f"--resume: no earlier invocation under {root}")
        path = str(runs[-1])
    else:
        path = preflight.resolve_storage(resume)
        inside = path.startswith(study_root.rstrip("/") + "/")
        if not inside:
            raise PreflightError(f"--resume {resume}: not inside this study's storage {study_root}")
    if not tune.Tuner.can_restore(path):
        raise PreflightError(f"--resume {path}: no Tune experiment state there")
    return path


def run_study(
    study: Study,
    *,
    args: argparse.Namespace,
    address: str,
    study_root: str,
    run_name: str,
    resume_path: str | None,
    parent_info: dict[str, Any] | None,
    started: float,
) -> int:
    import ray

    from ttsr.tracking import git_commit
    from tune import parent_run, report, tuner

    uri = args.mlflow_uri
    if parent_info is None:
        experiment_dir = f"{study_root}/{run_name}"
        tags = {
            "study": study.name,
            "profile": study.profile,
            "git_commit": git_commit(REPO) or "unknown",
            "ray_address": address,
            "storage": experiment_dir,
        }
        params = {f"config.{k}": v for k, v in sorted(study.config.items())}
        params.update(
            {
                "num_samples": study.num_samples,
                "search": {k: list(d.values) for k, d in study.search.items()} or None,
                "cases": list(study.cases) or None,
                "scheduler": study.scheduler,
                "objectives": [f"{o.metric}:{o.mode}" for o in study.objectives],
            }
        )
        experiment_id, parent_id = parent_run.start_parent(
            uri, study=study.name, run_name=run_name, tags=tags, params=params
        )
        parent_info = {
            "run_id": parent_id,
            "experiment_id": experiment_id,
            "tracking_uri": uri,
            "profile": study.profile,
            "data": study.data,
            "run_name": run_name,
        }
        preflight.write_json(f"{experiment_dir}/{parent_run.PARENT_FILE}", parent_info)
    else:
        experiment_dir = resume_path
        parent_id, experiment_id = parent_info["run_id"], parent_info["experiment_id"]
        if parent_info.get("tracking_uri") != uri:
            print(f"note: the parent run lives in {parent_info['tracking_uri']}; using that store")
            uri = parent_info["tracking_uri"]
        parent_run.reopen(uri, parent_id)
    print(f"mlflow parent run {parent_id} (experiment {study.name!r})")

    meta = {
        "study": study.name,
        "tracking_uri": uri,
        "experiment_id": experiment_id,
        "parent_run_id": parent_id,
    }
    status = parent_run.KILLED
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        if resume_path:
            print(f"resuming: loading Tune's pickled experiment state from {resume_path}")
            t = tuner.restore_tuner(study, meta=meta, path=resume_path)
        else:
            t = tuner.build_tuner(
                study, meta=meta, storage=study_root, name=run_name, seed=args.seed
            )
        t.fit()
        trial_status = trial_states(experiment_dir)
        parent_run.close_children(uri, experiment_id, parent_id, trial_status)
        unfinished = [s for s in trial_status.values() if s not in ("TERMINATED", "ERROR")]
        errored = [s for s in trial_status.values() if s == "ERROR"]
        if unfinished:
            status = parent_run.KILLED
            print(f"study interrupted, {len(unfinished)} trial(s) unfinished; --resume continues")
        elif errored and len(errored) == len(trial_status):
            status = parent_run.FAILED
        else:
            status = parent_run.FINISHED
        ray.shutdown()  # free the CPUs before the report
        if not args.no_report:
            out = report.make_report(
                experiment_dir, study=study, tracking_uri=uri, parent_run_id=parent_id
            )
            print(out.summary)
        elapsed = time.monotonic() - started
        print(f"\nstudy {study.name!r} done in {elapsed:.0f} s ({study.profile} profile)")
        print(f"results:    {experiment_dir}")
        print(f"look at it: {preflight.mlflow_ui_command(uri)}")
        return 0 if status == parent_run.FINISHED else 1
    except KeyboardInterrupt:
        status = parent_run.KILLED
        print("interrupted; the study can continue with --resume", file=sys.stderr)
        return 130
    except BaseException:
        status = parent_run.FAILED
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        parent_run.close_children(uri, experiment_id, parent_id, {})  # no-op when all closed
        parent_run.end(uri, parent_id, status)


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


def trial_states(experiment_dir: str) -> dict[str, str]:
    """Tune trial id -> Tune status (TERMINATED, ERROR, PENDING, ...) from the saved state."""
    from ray.tune import ExperimentAnalysis

    return {t.trial_id: t.status for t in ExperimentAnalysis(experiment_dir).trials}


if __name__ == "__main__":
    sys.exit(main())
