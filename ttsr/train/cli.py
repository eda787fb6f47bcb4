"""`python -m ttsr.train`: build a TrainConfig from flags (and an optional YAML), then train.

Precedence: defaults < --config file < --from-run's config or --resume checkpoint's config <
explicit flags < --set KEY=VALUE. ``--from-run runs:/RUN_ID`` trains a tracked run again: its
``config.json`` artifact (every field: seed, data subset, warm start) as a new MLflow run in the
same experiment, tagged ``rerun_of``, writing to runs/rerun-<id> unless --out says. Bad values
print one line naming the field or flag and exit with code 2; every other error is one line too,
with the exit codes of `ttsr.cli_errors` (74: a write failed, e.g. the disk is full; 69: the
MLflow server is unreachable; 130: interrupted).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
from pathlib import Path
from typing import Any

from ttsr import names
from ttsr.cli_errors import DEBUG_HELP, run_cli
from ttsr.config import ConfigError, TrainConfig, parse_set
from ttsr.errors import first_line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ttsr.train", description="Train TTSR (reference-based 4x super-resolution)."
    )
    p.add_argument("--config", type=Path, help="YAML file of TrainConfig fields")
    p.add_argument("--data", help="prepared or paired data folder (omit: built-in sample set)")
    p.add_argument("--size", type=int, help="HR / reference side in pixels (multiple of 4)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--epochs", type=int, help="maximum number of epochs")
    p.add_argument("--rec-w", type=float, help="reconstruction (L1) weight")
    p.add_argument("--per-w", type=float, help="perceptual (VGG19 relu5_1) weight")
    p.add_argument("--tpl-w", type=float, help="transferal perceptual weight")
    p.add_argument("--adv-w", type=float, help="adversarial (WGAN-GP) weight")
    p.add_argument("--init-epochs", type=int, help="reconstruction-only epochs first")
    p.add_argument("--ref-mode", help="gt, gt-augmented, other or paired")
    p.add_argument("--inpaint", action="store_true", default=None, help="blur a box of the input")
    p.add_argument("--fraction", type=float, help="fraction of each split, in (0, 1]")
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random flips/rotations of the training items (default: on)",
    )
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    p.add_argument(
        "--out", dest="out_dir", metavar="OUT", help="output folder (checkpoints/, samples/)"
    )
    p.add_argument("--n-feats", type=int)
    p.add_argument("--num-res-blocks", help="e.g. 16+16+8+4")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--amp", help="auto, bf16, fp16 or off")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--seed", type=int)
    p.add_argument("--val-limit", type=int, help="validate on at most this many test images")
    p.add_argument("--lr", type=float, help="MainNet learning rate")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--sample-every", type=int, help="sample grids every N epochs (0 = never)")
    p.add_argument("--vgg-weights", help="path to torchvision VGG19 ImageNet weights")
    p.add_argument("--init-checkpoint", help="start from these model weights (fine-tune)")
    p.add_argument(
        "--val-ref-modes",
        type=lambda text: [m for m in text.split(",") if m],
        help="extra reference modes to validate with, comma-separated (e.g. other)",
    )
    p.add_argument("--early-stop-metric", help="val_psnr or val_psnr_<mode> of --val-ref-modes")
    p.add_argument("--budget-steps", type=int, help="make exactly this many optimiser steps")
    p.add_argument("--budget-images", type=int, help="train on exactly this many images")
    p.add_argument("--log-every-steps", type=int, help="read the loss every N steps (0 = epoch)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any TrainConfig field, value as YAML (repeatable; wins over the flags)",
    )
    p.add_argument(
        "--resume", type=Path, help="checkpoint folder to continue (e.g. OUT/checkpoints/latest)"
    )
    p.add_argument(
        "--from-run",
        metavar="runs:/RUN_ID",
        help="train a tracked run again from its config.json (needs --mlflow-uri or "
        "$MLFLOW_TRACKING_URI); flags and --set change fields",
    )
    p.add_argument(
        "--mlflow-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI; none = no tracking)",
    )
    p.add_argument(
        "--experiment", help="MLflow experiment name (default: ttsr; --from-run: the run's)"
    )
    p.add_argument("--run-name", help="MLflow run name (--from-run: re-run of <its name>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar / summary lines")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    return p


def load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        values = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config: {path} is not valid YAML ({first_line(exc)})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"--config: {path} must hold a mapping of TrainConfig fields")
    return values


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainConfig:
    """``base``: a resumed checkpoint's or a --from-run run's config."""
    values: dict[str, Any] = {}
    if args.config is not None:
        values.update(load_yaml(args.config))
    if base is not None:
        values.update(base)
    # A flag's dest is its TrainConfig field; None = not given.
    values.update(
        (k, v) for k, v in vars(args).items() if k in TrainConfig.model_fields and v is not None
    )
    values.update(parse_set(text) for text in args.set)
    return TrainConfig.from_dict(values)


def read_source_run(ref: str, uri: str | None) -> tuple[Any, dict[str, Any]]:
    """--from-run: (the MLflow run, its config with a fresh out_dir); one line if it is not a
    training run or its config is from a newer ttsr-tune."""
    if not uri:
        raise ConfigError(
            f"--from-run {ref}: give --mlflow-uri (or set MLFLOW_TRACKING_URI): the tracking "
            "server or store that holds the run"
        )
    from ttsr.tracking import run_config

    run, values = run_config(uri, ref)
    unknown = sorted(set(values) - set(TrainConfig.model_fields))
    if unknown:
        raise ConfigError(
            f"--from-run {ref}: its config.json has field(s) {', '.join(unknown)} that this "
            "ttsr-tune does not know (written by a newer version?): update ttsr-tune"
        )
    return run, {**values, "out_dir": f"runs/rerun-{run.info.run_id[:8]}"}


def check_reachable(config: TrainConfig, ref: str) -> None:
    """--from-run: the files the run trained from are here, or one line says which is not."""
    if config.init_checkpoint is not None and not Path(config.init_checkpoint).exists():
        raise ConfigError(
            f"--from-run {ref}: its warm start {config.init_checkpoint} is not here; copy that "
            "checkpoint here and pass --init-checkpoint PATH"
        )
    if config.data is not None and "://" not in config.data and not Path(config.data).exists():
        raise ConfigError(
            f"--from-run {ref}: its data {config.data} is not here; pass --data PATH to the "
            "same prepared data"
        )


def check_out_dir(out_dir: Path) -> None:
    """Fail before any work when the output directory can't be written (not after epoch 1).
    Creates nothing: the nearest existing ancestor must be a writable directory."""
    existing = next(p for p in (out_dir, *out_dir.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out_dir}: not a writable directory ({existing} is not one)")


def main(argv: list[str] | None = None) -> int:
    """Errors are one line and an exit code (`ttsr.cli_errors`); ``--debug`` shows tracebacks."""
    return run_cli(lambda: _main(argv), argv=argv)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.from_run and args.resume is not None:
        raise ConfigError("--from-run and --resume: give one (--resume continues a run)")
    uri = args.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        from ttsr.tracking import check_server

        check_server(uri)  # a server that is down: one line now, not after the retry budget
    resumed_state = read_resumed_state(args.resume) if args.resume is not None else None
    source, base = read_source_run(args.from_run, uri) if args.from_run else (None, None)
    config = config_from_args(args, resumed_state["config"] if resumed_state else base)
    if source is not None:
        check_reachable(config, args.from_run)
    check_out_dir(Path(config.out_dir))

    from ttsr.train.loop import train  # torch: only once the flags are valid

    if source is not None:
        use_source_threads(source)

    tracker, callbacks, extra = None, [], {}
    if uri:
        from ttsr.tracking import RERUN_OF_TAG, MlflowCallback, MlflowTracker

        run_id = resumed_state.get("tracker_run_id") if resumed_state else None
        experiment, run_name, tags = args.experiment or "ttsr", args.run_name, {}
        if source is not None:  # beside the run it trains again, saying so
            if not args.experiment:
                from mlflow.tracking import MlflowClient

                experiment = MlflowClient(uri).get_experiment(source.info.experiment_id).name
            run_name = args.run_name or f"re-run of {source.info.run_name}"
            tags = {RERUN_OF_TAG: source.info.run_id}
        tracker = MlflowTracker(
            tracking_uri=uri, experiment=experiment, run_name=run_name, run_id=run_id, tags=tags
        )
        callbacks.append(MlflowCallback(tracker))
        extra["tracker_run_id"] = tracker.run_id
        print(f"MLflow run {tracker.run_id} at {uri}", flush=True)
    try:
        with tracker if tracker is not None else contextlib.nullcontext():
            result = train(
                config,
                callbacks=callbacks,
                resume_from=args.resume,
                progress=not args.no_progress,
                checkpoint_extra=extra,
            )
    except OSError as exc:
        raise _with_resume_hint(exc, Path(config.out_dir)) from exc
    print(
        f"stop_reason {result.stop_reason} | best epoch {result.best_epoch} "
        f"val_psnr {result.best_val_psnr:.2f} dB | best checkpoint {result.best_checkpoint}",
        flush=True,
    )
    if tracker is not None and not tracker.complete:
        from ttsr.tracking import TrackingUnavailable

        raise TrackingUnavailable(
            f"{uri}: the run trained to the end, but MLflow run {tracker.run_id} could not be "
            f"ended ({len(tracker.unsent)} logging call(s) not sent); it stays RUNNING there"
        )
    return 0


def use_source_threads(run: Any) -> None:
    """--from-run: train with the CPU threads the run had (a Ray trial: its ``cpus_per_trial``),
    since a float sum split over another number of threads rounds differently (measured: a
    demo trial re-run on 2 threads instead of its 1 was 5e-4 dB off at epoch 1)."""
    import torch

    threads = run.data.tags.get(names.THREADS_TAG, "")
    if threads.isdigit() and int(threads) != torch.get_num_threads():
        torch.set_num_threads(int(threads))
        print(f"{threads} CPU thread(s), as run {run.info.run_id} had", flush=True)


def read_resumed_state(path: Path) -> dict[str, Any]:
    from ttsr.checkpoint import load_state

    try:
        return load_state(path)
    except FileNotFoundError as exc:
        raise ConfigError(f"--resume: {exc}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError) as exc:
        # weights_only=True refuses anything but tensors and primitives: a pickled object is
        # reported, never executed.
        raise ConfigError(
            f"--resume {path}: not a ttsr-tune training checkpoint ({first_line(exc)})"
        ) from None


def _with_resume_hint(exc: OSError, out_dir: Path) -> OSError:
    """A failed write (disk full, ...) says which complete checkpoint to resume from."""
    from ttsr.checkpoint import STATE_FILE

    latest = out_dir / "checkpoints" / "latest"
    if exc.errno is None or not (latest / STATE_FILE).is_file():
        return exc
    why = f"{exc.strerror}; the last complete checkpoint is intact: --resume {latest}"
    return OSError(exc.errno, why, exc.filename)
