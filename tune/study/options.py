"""``tune/run.py``'s flags, parsed into one ``Options`` namespace.

Flag values that cannot work are rejected here (``PreflightError``/``StudyError``, one line
naming the flag); values that depend on the study (``--set``, ``--max-epochs``, ...) travel as
``Options.overrides()`` to the schema, which validates them like the YAML.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ttsr.cli_errors import DEBUG_HELP
from tune.study.preflight import PreflightError
from tune.study.studies import PROFILES, StudyError, parse_set

DEFAULT_EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments.yaml"

# flag -> the study or TrainConfig key it overrides
FLAG_KEYS = {
    "--max-epochs": "epochs",
    "--num-samples": "num_samples",
    "--gpus-per-trial": "gpus_per_trial",
    "--cpus-per-trial": "cpus_per_trial",
    "--max-concurrent": "max_concurrent",
}


class Options(argparse.Namespace):
    """The flags, by their argparse names; ``sets``: the --set pairs, values parsed as YAML;
    ``resume``: "latest" or a path."""

    @property
    def local_ray(self) -> bool:
        """No --address: this command starts (and stops) its own Ray on 127.0.0.1."""
        return not self.address

    def overrides(self) -> dict[str, Any]:
        """Study/TrainConfig values to override: every --set, and the flags that set a key."""
        out = dict(self.sets)
        for flag, key in FLAG_KEYS.items():
            value = getattr(self, flag.removeprefix("--").replace("-", "_"))
            if value is None:
                continue
            if key in out:
                raise StudyError(f"--set {key} and {flag} both set {key}; give one")
            out[key] = value
        return out

    def override_labels(self) -> dict[str, str]:
        """How an override is named in errors: the flag it came from."""
        return {key: flag for flag, key in FLAG_KEYS.items()}


def parse_options(argv: list[str] | None = None) -> Options:
    """Parse and check the flags; bad usage exits 2 (argparse), bad values raise."""
    parser = build_parser()
    options = parser.parse_args(argv, namespace=Options())
    if options.study is None and not options.list_studies:
        parser.error("--study is required (or --list to see the studies)")
    options.sets = _parse_sets(options.sets)
    _check_values(options)
    return options


def _parse_sets(texts: list[str]) -> tuple[tuple[str, Any], ...]:
    pairs = [parse_set(t) for t in texts]
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise StudyError(f"--set {key}: given twice")
        seen.add(key)
    return tuple(pairs)


def _check_values(o: Options) -> None:
    """Flag values, checked before anything is created or started."""
    for flag, value, low in (
        ("--num-samples", o.num_samples, 1),
        ("--max-epochs", o.max_epochs, 1),
        ("--max-concurrent", o.max_concurrent, 1),
    ):
        if value is not None and value < low:
            raise PreflightError(f"{flag} {value}: must be >= {low}")
    if o.gpus_per_trial is not None and o.gpus_per_trial < 0:
        raise PreflightError(f"--gpus-per-trial {o.gpus_per_trial:g}: must be >= 0")
    if o.cpus_per_trial is not None and o.cpus_per_trial <= 0:
        raise PreflightError(f"--cpus-per-trial {o.cpus_per_trial:g}: must be > 0")
    if o.measure and not o.dry_run:
        raise PreflightError("--measure: only with --dry-run (it times steps on this GPU)")


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--study", default=None, help="study name in experiments.yaml")
    p.add_argument(
        "--list",
        dest="list_studies",
        action="store_true",
        help="print the studies (name, kind, trials per profile) and exit",
    )
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
        default=os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}",
        help="MLflow tracking URI (env MLFLOW_TRACKING_URI)",
    )
    p.add_argument(
        "--storage",
        default="ray_results",
        help="Tune results: local dir (made absolute) or s3://... for multi-node clusters",
    )
    p.add_argument(
        "--optuna-storage",
        default=None,
        metavar="URL",
        help="RDB storage of a searched study's Optuna study (any SQLAlchemy URL, e.g. "
        "postgresql://USER@HOST/DB), for optuna-dashboard; default: optuna.db beside a "
        "sqlite MLflow store, else $PWD/optuna.db",
    )
    p.add_argument("--experiments", default=str(DEFAULT_EXPERIMENTS), help="studies YAML file")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a TrainConfig field or a study field (num_samples, repeats, "
        "max_concurrent, cpus_per_trial, gpus_per_trial, grace_period, scheduler) for this "
        "run; VALUE is YAML; repeatable; validated like experiments.yaml",
    )
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
    _add_local_ray_flags(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan; start nothing")
    p.add_argument(
        "--measure",
        action="store_true",
        help="with --dry-run: estimate the seed profile's trial times and memory from a few "
        "training steps of each trial config on this machine's CUDA GPU, instead of "
        "tune/figures.json",
    )
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    p.add_argument(
        "--allow-random-vgg",
        action="store_true",
        help="run a seed-profile quality study without ImageNet VGG19 weights (random "
        "texture-extractor and perceptual features; recorded on the parent run)",
    )
    return p


def _add_local_ray_flags(p: argparse.ArgumentParser) -> None:
    """The flags of the Ray this command starts when no --address is given."""
    p.add_argument(
        "--num-cpus", type=int, default=None, help="local Ray only: CPUs it may use (default all)"
    )
    p.add_argument(
        "--ray-temp-dir",
        default=None,
        help="local Ray only: its session/socket dir (keep it short, e.g. /tmp/rt_x)",
    )
    p.add_argument(
        "--no-dashboard",
        action="store_true",
        help="local Ray only: don't start the Ray dashboard (default: on 127.0.0.1:8265)",
    )
    p.add_argument(
        "--dashboard-port",
        type=int,
        default=None,  # Ray's own choice: 8265, or the next free port (another study runs there)
        help="local Ray only: dashboard port, an error when taken (default: 8265 or the next "
        "free one)",
    )
