"""`python -m ttsr.train`: build a TrainConfig from flags (and an optional YAML), then train.

Precedence: defaults < --config file < --resume checkpoint's config < explicit flags. Bad values
print one line naming the field or flag and exit with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import sys
from pathlib import Path
from typing import Any

from ttsr.config import ConfigError, TrainConfig
from ttsr.data.errors import DataError

# flag dest -> TrainConfig field (flags default to None: "not given").
FLAG_FIELDS = {
    "data": "data",
    "size": "size",
    "batch_size": "batch_size",
    "epochs": "epochs",
    "rec_w": "rec_w",
    "per_w": "per_w",
    "tpl_w": "tpl_w",
    "adv_w": "adv_w",
    "init_epochs": "init_epochs",
    "ref_mode": "ref_mode",
    "inpaint": "inpaint",
    "fraction": "fraction",
    "patience": "patience",
    "out": "out_dir",
    "n_feats": "n_feats",
    "num_res_blocks": "num_res_blocks",
    "device": "device",
    "amp": "amp",
    "compile": "compile",
    "seed": "seed",
    "val_limit": "val_limit",
    "lr": "lr",
    "num_workers": "num_workers",
    "sample_every": "sample_every",
    "vgg_weights": "vgg_weights",
    "init_checkpoint": "init_checkpoint",
    "val_ref_modes": "val_ref_modes",
    "early_stop_metric": "early_stop_metric",
    "budget_steps": "budget_steps",
    "budget_images": "budget_images",
    "log_every_steps": "log_every_steps",
}


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
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    p.add_argument("--out", help="output folder (checkpoints/, samples/)")
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
        "--resume", type=Path, help="checkpoint folder to continue (e.g. OUT/checkpoints/latest)"
    )
    p.add_argument(
        "--mlflow-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI; none = no tracking)",
    )
    p.add_argument("--experiment", default="ttsr", help="MLflow experiment name")
    p.add_argument("--run-name", help="MLflow run name")
    p.add_argument("--no-progress", action="store_true", help="no progress bar / summary lines")
    return p


def load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        values = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"--config: {path} is not valid YAML ({str(exc).splitlines()[0]})"
        ) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"--config: {path} must hold a mapping of TrainConfig fields")
    return values


def config_from_args(
    args: argparse.Namespace, resumed: dict[str, Any] | None = None
) -> TrainConfig:
    values: dict[str, Any] = {}
    if args.config is not None:
        values.update(load_yaml(args.config))
    if resumed is not None:
        values.update(resumed)
    for dest, name in FLAG_FIELDS.items():
        value = getattr(args, dest)
        if value is not None:
            values[name] = value
    return TrainConfig.from_dict(values)


def check_out_dir(out_dir: Path) -> None:
    """Fail before any work when the output directory can't be written (not after epoch 1).
    Creates nothing: the nearest existing ancestor must be a writable directory."""
    existing = next(p for p in (out_dir, *out_dir.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out_dir}: not a writable directory ({existing} is not one)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    resumed_state = None
    try:
        if args.resume is not None:
            from ttsr.checkpoint import load_state

            try:
                resumed_state = load_state(args.resume)
            except FileNotFoundError as exc:
                raise ConfigError(f"--resume: {exc}") from None
            except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError) as exc:
                # weights_only=True refuses anything but tensors and primitives: a pickled
                # object is reported, never executed.
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ConfigError(
                    f"--resume {args.resume}: not a ttsr-tune training checkpoint ({first})"
                ) from None
        config = config_from_args(args, resumed_state["config"] if resumed_state else None)
        check_out_dir(Path(config.out_dir))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from ttsr.train.loop import train  # torch: only once the flags are valid
    from ttsr.vgg import VGGWeightsError

    tracker, callbacks, extra = None, [], {}
    uri = args.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        from ttsr.tracking import MlflowCallback, MlflowTracker

        run_id = resumed_state.get("tracker_run_id") if resumed_state else None
        tracker = MlflowTracker(
            tracking_uri=uri, experiment=args.experiment, run_name=args.run_name, run_id=run_id
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
    except (ConfigError, DataError, VGGWeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(
        f"stop_reason {result.stop_reason} | best epoch {result.best_epoch} "
        f"val_psnr {result.best_val_psnr:.2f} dB | best checkpoint {result.best_checkpoint}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
