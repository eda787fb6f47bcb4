"""The TTSR training loop: `train(config)` for scripts, tests and Ray trials; the CLI.

`python -m ttsr.train` runs `ttsr.train_cli.main`.

One epoch reads top to bottom in `train`: set the epoch's data order, for each batch run one
`ttsr.step.TrainStep` (the model, the discriminator's WGAN-GP update `gan_k` times, the
generator update on the weighted losses: the same step `ttsr.bench` times); then validate,
decide whether to stop, write the checkpoint atomically, log, and call
`on_epoch_end(metrics, checkpoint_dir)`.

Exact resume: the data order of epoch e is drawn from a generator seeded with
``seed * 1000 + e`` (the dataset's own augmentation draws depend on (seed, epoch, index)), and
the global RNG states (torch, CUDA, NumPy, Python), model, discriminator, optimisers,
schedulers, early-stopper state and history are saved after every epoch. A run resumed from
``checkpoints/latest`` therefore continues as if it had never stopped.

No host syncs in the hot loop: loss sums are accumulated as device tensors and read once per
epoch. The non-finite-loss check reads the running sum every `NAN_CHECK_STEPS` steps on GPU
(a NaN stays in the sum, so none is missed; at most that many steps run on bad weights before
the epoch stops) and at every step on the CPU, where a sync costs nothing.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ttsr import names
from ttsr.checkpoint import save_checkpoint
from ttsr.config import ConfigError, TrainConfig
from ttsr.data import open_dataset_from_config
from ttsr.discriminator import Discriminator
from ttsr.early_stopping import EarlyStopper, OutputCollapseMonitor
from ttsr.grids import save_sample_grid
from ttsr.losses import PerceptualDistance, PerceptualLoss, reconstruction_loss
from ttsr.metrics import psnr, ssim, to_y
from ttsr.model import TTSR, ModelConfig
from ttsr.step import D_BETAS, LossWeights, TrainStep
from ttsr.vgg import vgg19_features

NAN_CHECK_STEPS = 50  # on GPU: how often the running loss sum is checked for NaN/inf
PSNR_CAP = 100.0  # identical images have infinite PSNR; cap per image so means stay finite
STATE_FILE = "state.pt"
MODEL_FILE = "model.pt"
IMAGE_KEYS = ("LR", "LR_up", "HR", "Ref", "Ref_downup")

OnEpochEnd = Callable[[dict[str, Any], Path], None]


@dataclass
class TrainResult:
    stop_reason: str
    best_epoch: int
    best_val_psnr: float
    history: list[dict[str, Any]] = field(default_factory=list)
    best_checkpoint: Path | None = None  # checkpoints/best (holds state.pt and model.pt)
    run_id: str | None = None  # the tracker's run, if any


# --- setup helpers ---------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but no CUDA device is available")
    return torch.device(name)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. 'auto' = bf16 on CUDA, fp32 on the CPU."""
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


def check_loss_weights(config: TrainConfig) -> None:
    """Reject weight combinations that leave nothing to train (named by field)."""
    if config.rec_w + config.per_w + config.tpl_w + config.adv_w == 0:
        raise ConfigError("rec_w/per_w/tpl_w/adv_w: all loss weights are 0; nothing to train")
    if config.init_epochs > 0 and config.rec_w == 0:
        raise ConfigError(
            f"init_epochs: {config.init_epochs} reconstruction-only epochs need rec_w > 0"
        )


def model_config(config: TrainConfig) -> ModelConfig:
    return ModelConfig(
        n_feats=config.n_feats, num_res_blocks=config.res_blocks, res_scale=config.res_scale
    )


def loss_weights(config: TrainConfig) -> LossWeights:
    return LossWeights(
        rec=config.rec_w,
        per=config.per_w,
        tpl=config.tpl_w,
        adv=config.adv_w,
        gan_k=config.gan_k,
        gp_weight=config.gp_weight,
        tpl_use_s=config.tpl_use_s,
        tpl_kind=config.tpl_loss,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The data-order RNG of one epoch: a function of (seed, epoch) only, so resume is exact."""
    return torch.Generator().manual_seed(seed * 1000 + epoch)


# --- RNG state as tensors and primitives (torch.load(weights_only=True) can read it) ---------


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


# --- atomic checkpoint directories -----------------------------------------------------------


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _old_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def write_dir_atomically(final: Path, write: Callable[[Path], None]) -> Path:
    """Fill a temporary sibling directory with ``write(tmp)``, fsync it, and swap it in.

    The previous version is renamed aside, the new one renamed into place, then the old one
    removed: at no moment does ``final`` hold a half-written checkpoint. If the process dies
    between the two renames, `resolve_checkpoint_dir` finds the complete old copy.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp.", dir=final.parent))
    try:
        write(tmp)
        for f in tmp.iterdir():
            _fsync_path(f)
        _fsync_path(tmp)
        old = _old_name(final)
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.rename(final, old)
        os.rename(tmp, final)
        _fsync_path(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def write_checkpoint(
    directory: Path,
    *,
    state: dict[str, Any],
    model: TTSR,
    model_config: ModelConfig,
    val_psnr: float,
) -> None:
    """state.pt (everything to resume) and model.pt (weights for `ttsr.checkpoint.load_model`)."""
    torch.save(state, directory / STATE_FILE)
    save_checkpoint(
        directory / MODEL_FILE,
        model_state=model.reference_state_dict(),
        model_config=model_config,
        extra={"epoch": state["epoch"], "val_psnr": val_psnr},
    )


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """A checkpoint directory (or its state.pt) -> the directory that holds a complete state."""
    path = Path(path)
    if path.name == STATE_FILE:
        path = path.parent
    if (path / STATE_FILE).is_file():
        return path
    if (_old_name(path) / STATE_FILE).is_file():  # died between the two renames of a swap
        return _old_name(path)
    raise FileNotFoundError(f"resume: no {STATE_FILE} in {path}")


def load_state(path: str | Path) -> dict[str, Any]:
    directory = resolve_checkpoint_dir(path)
    return torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)


# --- validation ------------------------------------------------------------------------------


def masked_psnr(sr: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PSNR (the reference's luma difference) over the pixels where mask is 1.

    sr, hr: (N, 3, H, W) in [-1, 1]; mask: (N, 1, H, W) of 0/1. -> (N,)
    """
    se = ((to_y(sr) - to_y(hr)) / 255.0).pow(2)
    m = mask.to(se.dtype)
    mse = (se * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1.0)
    return (-10.0 * torch.log10(mse)).clamp(max=PSNR_CAP)


@torch.no_grad()
def validate(
    forward: Callable[..., Any],
    loader: DataLoader,
    *,
    device: torch.device,
    autocast: Callable[[], Any],
    distance: nn.Module,
    inpaint: bool,
    prepare: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[dict[str, float], OutputCollapseMonitor]:
    """Mean PSNR/SSIM/perceptual distance over the loader; one host sync at the end."""
    sums: dict[str, torch.Tensor] = {}
    count = 0
    collapse = OutputCollapseMonitor()

    def add(key: str, values: torch.Tensor) -> None:
        sums[key] = sums.get(key, 0.0) + values.double().sum()

    for batch in loader:
        lr, lr_up, hr, ref, ref_downup = (prepare(batch[k]) for k in IMAGE_KEYS)
        with autocast():
            sr = forward(lr, lr_up, ref, ref_downup).sr
        sr = sr.float()
        add(names.VAL_PSNR, psnr(sr, hr).clamp(max=PSNR_CAP))
        add(names.VAL_SSIM, ssim(sr, hr))
        add(names.VAL_LPIPS_PROXY, distance(sr, hr))
        if inpaint:
            mask = batch["mask"].to(device, non_blocking=True)
            add(names.VAL_PSNR_MASK, masked_psnr(sr, hr, mask))
            add(names.VAL_PSNR_OUTSIDE, masked_psnr(sr, hr, 1.0 - mask))
        collapse.update(sr)
        count += hr.shape[0]
    return {k: float(v) / count for k, v in sums.items()}, collapse


@torch.no_grad()
def bicubic_psnr(loader: DataLoader, device: torch.device) -> float:
    """PSNR of plain bicubic upsampling (LR_up) against HR over the loader."""
    total, count = 0.0, 0
    for batch in loader:
        hr = batch["HR"].to(device)
        total = total + psnr(batch["LR_up"].to(device), hr).clamp(max=PSNR_CAP).sum()
        count += hr.shape[0]
    return float(total) / count


def fixed_samples(dataset: Any, count: int) -> dict[str, torch.Tensor]:
    """The first ``count`` items of a dataset stacked into a batch (for sample grids)."""
    items = [dataset[i] for i in range(min(count, len(dataset)))]
    return {k: torch.stack([it[k] for it in items]) for k in IMAGE_KEYS}


# --- the loop --------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    *,
    on_epoch_end: OnEpochEnd | None = None,
    resume_from: str | Path | None = None,
    tracker: Any = None,
    progress: bool = True,
) -> TrainResult:
    """Train TTSR as ``config`` says; see the module docstring and docs/TRAINING.md.

    on_epoch_end(metrics, checkpoint_dir): called after every epoch once ``checkpoint_dir``
        (out_dir/checkpoints/latest) was written; metrics use the `ttsr.names` keys.
    resume_from: a checkpoint directory of an earlier run (its ``latest`` or ``best``).
    tracker: an `ttsr.tracking.MlflowTracker` (or anything with its methods); ``train`` enters
        it as a context manager, so the run ends FINISHED / FAILED / KILLED with this call.
    """
    with tracker if tracker is not None else contextlib.nullcontext():
        return _train(
            config,
            on_epoch_end=on_epoch_end,
            resume_from=resume_from,
            tracker=tracker,
            progress=progress,
        )


def _train(
    config: TrainConfig,
    *,
    on_epoch_end: OnEpochEnd | None,
    resume_from: str | Path | None,
    tracker: Any,
    progress: bool,
) -> TrainResult:
    check_loss_weights(config)
    device = resolve_device(config.device)
    dtype = amp_dtype(config.amp, device)
    if device.type == "cuda":
        # Speed over bitwise reproducibility on the GPU (CPU runs stay exactly reproducible).
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    seed_everything(config.seed)
    out_dir = Path(config.out_dir)
    ckpt_root = out_dir / "checkpoints"
    latest_dir, best_dir = ckpt_root / "latest", ckpt_root / "best"

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    memory_format = (
        torch.channels_last
        if device.type == "cuda" and config.channels_last
        else torch.contiguous_format
    )

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return x.to(device, non_blocking=True).contiguous(memory_format=memory_format)

    # --- data: the order of epoch e is drawn from epoch_generator(seed, e) --------------------
    train_set = open_dataset_from_config(config, "train")
    test_set = open_dataset_from_config(config, "test")
    val_set = test_set
    if config.val_limit is not None and config.val_limit < len(test_set):
        val_set = Subset(test_set, range(config.val_limit))
    pin = device.type == "cuda"
    val_loader = DataLoader(
        val_set,
        batch_size=config.batch_size,
        shuffle=False,
        num_workers=config.num_workers,
        pin_memory=pin,
    )
    grid_samples = {
        "train": fixed_samples(train_set, config.num_samples_grid),
        "test": fixed_samples(test_set, config.num_samples_grid),
    }

    # --- model, losses (a loss with weight 0 is never built), optimisers ---------------------
    model = TTSR(
        model_config(config), vgg_weights=config.vgg_weights, search_chunk=config.search_chunk
    ).to(device, memory_format=memory_format)
    forward = torch.compile(model) if config.compile else model
    vgg, vgg_pretrained = vgg19_features(config.vgg_weights)
    distance = PerceptualDistance(features=vgg).to(device)  # validation metric
    perceptual = PerceptualLoss(features=vgg).to(device) if config.per_w > 0 else None
    discriminator = None
    if config.adv_w > 0:
        discriminator = Discriminator().to(device, memory_format=memory_format)
    fused = device.type == "cuda"
    optimizer = torch.optim.Adam(
        [
            {"params": [p for p in model.MainNet.parameters() if p.requires_grad], "lr": config.lr},
            {"params": [p for p in model.LTE.parameters() if p.requires_grad], "lr": config.lr_lte},
        ],
        betas=(config.beta1, config.beta2),
        eps=config.eps,
        fused=fused,
    )
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=config.lr_decay_epochs, gamma=config.lr_gamma
    )
    d_optimizer = None
    if discriminator is not None:
        # As the reference: constant LR for the discriminator (no scheduler).
        d_optimizer = torch.optim.Adam(
            discriminator.parameters(), lr=config.lr_d, betas=D_BETAS, eps=config.eps, fused=fused
        )
    # The step owns the fp16 loss scalers. `reconstruction_loss` is passed by name from this
    # module so that a test can swap it here (tests/test_train.py poisons it with a NaN).
    train_step = TrainStep(
        model=model,
        forward=forward,
        optimizer=optimizer,
        weights=loss_weights(config),
        device_type=device.type,
        amp_dtype=dtype,
        perceptual=perceptual,
        discriminator=discriminator,
        d_optimizer=d_optimizer,
        rec_loss=reconstruction_loss,
    )
    stopper = EarlyStopper(
        patience=config.patience,
        min_delta=config.min_delta,
        divergence_floor_db=config.divergence_floor_db,
    )
    history: list[dict[str, Any]] = []
    start_epoch = 1

    # --- resume ------------------------------------------------------------------------------
    bicubic = None
    if resume_from is not None:
        state = load_state(resume_from)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if discriminator is not None:
            if state.get("discriminator") is None:
                raise ConfigError(
                    "adv_w: the checkpoint has no discriminator (it was trained with adv_w 0)"
                )
            discriminator.load_state_dict(state["discriminator"])
            d_optimizer.load_state_dict(state["d_optimizer"])
        stopper.load_state_dict(state["stopper"])
        history = list(state["history"])
        bicubic = state["bicubic_psnr"]
        start_epoch = int(state["epoch"]) + 1
        set_rng_state(state["rng"])
        if stopper.stop_reason == names.STOP_MAX_EPOCHS and config.epochs >= start_epoch:
            # More epochs were asked for: keep going, and the old last epoch is no longer final.
            stopper.stop_reason = None
            for key in (names.STOP_REASON, names.BEST_EPOCH, names.BEST_VAL_PSNR):
                history[-1].pop(key, None)

    if bicubic is None:
        bicubic = bicubic_psnr(val_loader, device)

    vgg_warning = (
        None
        if (vgg_pretrained and model.pretrained_vgg)
        else "VGG19 ImageNet weights not found: LTE, perceptual loss and val_perceptual "
        "use random weights"
    )
    if tracker is not None:
        tracker.log_params(config.to_dict())
        tags = {
            "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
            "vgg_pretrained": str(bool(vgg_pretrained and model.pretrained_vgg)).lower(),
        }
        from ttsr.tracking import git_commit

        commit = git_commit()
        if commit:
            tags["git_commit"] = commit
        if vgg_warning:
            tags["warning"] = vgg_warning
        tracker.set_tags(tags)

    def result() -> TrainResult:
        return TrainResult(
            stop_reason=stopper.stop_reason or names.STOP_MAX_EPOCHS,
            best_epoch=stopper.best_epoch,
            best_val_psnr=stopper.best_val_psnr,
            history=history,
            best_checkpoint=best_dir if (best_dir / STATE_FILE).is_file() else None,
            run_id=getattr(tracker, "run_id", None),
        )

    if stopper.should_stop or start_epoch > config.epochs:
        stopper.finish()
        return result()

    mcfg = model_config(config)
    for epoch in range(start_epoch, config.epochs + 1):
        t0 = time.perf_counter()
        init = epoch <= config.init_epochs  # reconstruction-only warm-up epochs
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        loader = DataLoader(
            train_set,
            batch_size=config.batch_size,
            shuffle=True,
            generator=epoch_generator(config.seed, epoch),
            num_workers=config.num_workers,
            pin_memory=pin,
            drop_last=len(train_set) > config.batch_size,
        )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        lr_main, lr_lte = (g["lr"] for g in optimizer.param_groups)
        model.train()
        loss_keys = [
            names.LOSS_TOTAL,
            names.LOSS_REC,
            names.LOSS_PER,
            names.LOSS_TPL,
            names.LOSS_ADV,
        ]
        sums = {k: torch.zeros((), device=device) for k in [*loss_keys, names.LOSS_D]}
        steps = d_steps = images = 0
        diverged_at: str | None = None
        check_every = 1 if device.type == "cpu" else NAN_CHECK_STEPS
        bar = tqdm(
            loader,
            desc=f"epoch {epoch}/{config.epochs}",
            disable=not progress,
            leave=False,
            dynamic_ncols=True,
        )
        for batch in bar:
            lr, lr_up, hr, ref, ref_downup = (prepare(batch[k]) for k in IMAGE_KEYS)
            losses = train_step(lr, lr_up, hr, ref, ref_downup, init=init)
            for key, value in losses.generator.items():
                sums[key] += value
            for value in losses.critic:
                sums[names.LOSS_D] += value
            d_steps += len(losses.critic)
            steps += 1
            images += hr.shape[0]

            if steps % check_every == 0:
                running = sums[names.LOSS_TOTAL] + sums[names.LOSS_D]
                if not bool(torch.isfinite(running)):
                    diverged_at = f"non-finite training loss at epoch {epoch}, by step {steps}"
                    break
                if progress and check_every > 1:
                    bar.set_postfix(loss=f"{float(sums[names.LOSS_TOTAL]) / steps:.4f}")
        bar.close()
        train_seconds = time.perf_counter() - t0
        if (
            diverged_at is None
            and steps
            and not math.isfinite(float(sums[names.LOSS_TOTAL] + sums[names.LOSS_D]))
        ):
            diverged_at = f"non-finite training loss at epoch {epoch}"

        metrics: dict[str, Any] = {names.EPOCH: epoch}
        for key in loss_keys:
            metrics[key] = float(sums[key]) / max(steps, 1)
        metrics[names.LOSS_D] = float(sums[names.LOSS_D]) / max(d_steps, 1)

        # Validation (skipped when the weights are already bad: nothing to measure).
        improved = False
        if diverged_at is not None:
            stopper.diverge(diverged_at)
            val = {
                names.VAL_PSNR: math.nan,
                names.VAL_SSIM: math.nan,
                names.VAL_LPIPS_PROXY: math.nan,
            }
            if config.inpaint:
                val.update({names.VAL_PSNR_MASK: math.nan, names.VAL_PSNR_OUTSIDE: math.nan})
        else:
            model.eval()
            val, collapse = validate(
                forward,
                val_loader,
                device=device,
                autocast=autocast,
                distance=distance,
                inpaint=config.inpaint,
                prepare=prepare,
            )
            collapsed = collapse.collapsed()
            if collapsed is not None:
                stopper.diverge(f"{collapsed} at epoch {epoch}")
            else:
                improved = stopper.update(epoch, val[names.VAL_PSNR])
        metrics.update(val)
        metrics[names.BICUBIC_PSNR] = bicubic

        # Sample grids of fixed train and test items.
        grid_paths: list[Path] = []
        if config.sample_every and epoch % config.sample_every == 0 and diverged_at is None:
            model.eval()
            with torch.no_grad():
                for split, s in grid_samples.items():
                    parts = {k: prepare(v) for k, v in s.items()}
                    with autocast():
                        sr_grid = forward(
                            parts["LR"], parts["LR_up"], parts["Ref"], parts["Ref_downup"]
                        ).sr
                    grid_paths.append(
                        save_sample_grid(
                            out_dir / "samples" / f"epoch_{epoch:03d}_{split}.png",
                            parts["LR_up"],
                            parts["Ref"],
                            sr_grid,
                            parts["HR"],
                        )
                    )

        if not init:
            scheduler.step()
        last = stopper.should_stop or epoch == config.epochs
        if last:
            stopper.finish()
        epoch_seconds = time.perf_counter() - t0
        metrics.update(
            {
                names.EPOCH_SECONDS: epoch_seconds,
                names.TRAIN_IMAGES_PER_SECOND: images / train_seconds if train_seconds > 0 else 0.0,
                names.PEAK_GPU_MEMORY_GIB: (
                    torch.cuda.max_memory_allocated(device) / 2**30
                    if device.type == "cuda"
                    else 0.0
                ),
                names.LR_MAIN: lr_main,
                names.LR_LTE: lr_lte,
                names.LR_D: config.lr_d if discriminator is not None else 0.0,
            }
        )
        if last:
            metrics[names.STOP_REASON] = stopper.stop_reason
            metrics[names.BEST_EPOCH] = stopper.best_epoch
            metrics[names.BEST_VAL_PSNR] = stopper.best_val_psnr
        history.append(metrics)

        # Checkpoint: latest always, best only when this epoch improved (never a diverged one).
        state = {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "discriminator": discriminator.state_dict() if discriminator is not None else None,
            "d_optimizer": d_optimizer.state_dict() if d_optimizer is not None else None,
            "stopper": stopper.state_dict(),
            "rng": rng_state(),
            "history": history,
            "bicubic_psnr": bicubic,
            "config": config.to_dict(),
            "tracker_run_id": getattr(tracker, "run_id", None),
        }

        write_dir_atomically(
            latest_dir,
            functools.partial(
                write_checkpoint,
                state=state,
                model=model,
                model_config=mcfg,
                val_psnr=metrics[names.VAL_PSNR],
            ),
        )
        if improved:
            write_dir_atomically(
                best_dir, lambda d: [shutil.copy2(f, d / f.name) for f in latest_dir.iterdir()]
            )

        _print_summary(metrics, config.epochs)  # one line per epoch, also in trial logs
        if tracker is not None:
            tracker.log_metrics(metrics, step=epoch)
            for path in grid_paths:
                tracker.log_image(path)
        if on_epoch_end is not None:
            on_epoch_end(dict(metrics), latest_dir)
        if last:
            break

    if tracker is not None:
        if (best_dir / MODEL_FILE).is_file():
            tracker.log_artifact(best_dir / MODEL_FILE, "checkpoints/best")
        tracker.set_tags(
            {
                names.STOP_REASON: stopper.stop_reason,
                names.BEST_EPOCH: stopper.best_epoch,
                "stop_detail": stopper.detail,
            }
        )
    return result()


def _print_summary(metrics: dict[str, Any], epochs: int) -> None:
    losses = " ".join(
        f"{k.removeprefix('loss_')} {metrics[k]:.4f}"
        for k in (
            names.LOSS_TOTAL,
            names.LOSS_REC,
            names.LOSS_PER,
            names.LOSS_TPL,
            names.LOSS_ADV,
            names.LOSS_D,
        )
        if metrics.get(k)
    )
    line = (
        f"epoch {metrics[names.EPOCH]}/{epochs} | {losses} | "
        f"val_psnr {metrics[names.VAL_PSNR]:.2f} "
        f"(bicubic {metrics[names.BICUBIC_PSNR]:.2f}) val_ssim {metrics[names.VAL_SSIM]:.4f} | "
        f"{metrics[names.EPOCH_SECONDS]:.1f} s"
    )
    if names.STOP_REASON in metrics:
        line += (
            f" | stop: {metrics[names.STOP_REASON]}, best epoch {metrics[names.BEST_EPOCH]} "
            f"({metrics[names.BEST_VAL_PSNR]:.2f} dB)"
        )
    print(line, file=sys.stdout, flush=True)


if __name__ == "__main__":
    from ttsr.train_cli import main

    raise SystemExit(main())
