"""Metric and tag names, defined once and imported everywhere (train loop, Tune, reports)."""

# validation quality (per epoch)
VAL_PSNR = "val_psnr"
VAL_SSIM = "val_ssim"
# the same on RGB after a 4-pixel border crop (MMagic / BasicSR's convention; ttsr.metrics)
VAL_PSNR_RGB_C4 = "val_psnr_rgb_c4"
VAL_SSIM_RGB_C4 = "val_ssim_rgb_c4"
VAL_PSNR_MASK = "val_psnr_mask"  # inpainting: inside the degraded box
VAL_PSNR_OUTSIDE = "val_psnr_outside"  # inpainting: outside the box
VAL_LPIPS_PROXY = "val_perceptual"  # perceptual distance (lower is better)
BICUBIC_PSNR = "bicubic_psnr"  # PSNR of plain bicubic upsampling on the same split
VAL_WHITE_SHARE = "val_white_share"  # share of SR pixels saturated white (divergence signal)
VAL_WHITE_SHARE_MASK = "val_white_share_mask"  # the same inside the inpainting box


def for_ref_mode(metric: str, mode: str) -> str:
    """A validation metric measured with an extra reference mode (``val_ref_modes``):
    ``for_ref_mode("val_psnr", "other") == "val_psnr_other"``; the run's own is ``val_psnr``."""
    return f"{metric}_{mode}"


# training (per epoch, train-split means)
LOSS_TOTAL = "loss_total"
LOSS_REC = "loss_rec"
LOSS_PER = "loss_per"
LOSS_TPL = "loss_tpl"
LOSS_ADV = "loss_adv"
LOSS_D = "loss_d"
LOSSES = (LOSS_TOTAL, LOSS_REC, LOSS_PER, LOSS_TPL, LOSS_ADV, LOSS_D)  # an epoch's mean losses

# speed / resources
EPOCH = "epoch"  # validation round: a pass over the data, or budget / epochs steps
STEP = "step"  # optimiser steps so far
IMAGES_SEEN = "images_seen"  # training images so far
EPOCH_SECONDS = "epoch_seconds"
TRAIN_IMAGES_PER_SECOND = "train_images_per_s"
PEAK_GPU_MEMORY_GIB = "peak_gpu_memory_gib"
LR_MAIN = "lr_main"
LR_LTE = "lr_lte"
LR_D = "lr_d"

# early stopping / outcome
STOP_REASON = "stop_reason"
BEST_EPOCH = "best_epoch"
BEST_VAL_PSNR = "best_val_psnr"  # val_psnr at the kept epoch (= kept(VAL_PSNR))
# Quality metrics a run also reports at its kept epoch (the best checkpoint's), as kept(name):
# every validation PSNR, SSIM and perceptual distance, per reference mode and region.
SUMMARISED = (VAL_PSNR, VAL_SSIM, VAL_LPIPS_PROXY)


def kept(metric: str) -> str:
    """``metric`` at the run's kept epoch (its best checkpoint's, on ``early_stop_metric``):
    ``kept("val_psnr") == "best_val_psnr"``. Every epoch reports these for the kept epoch so
    far, so a run's last values are the kept model's in MLflow, Tune (Optuna) and the report."""
    return f"best_{metric}"


def summarised(metric: str) -> bool:
    """Whether ``metric`` is one of the quality metrics reported again at the kept epoch."""
    return metric.startswith(SUMMARISED)


def kept_value(metric: str) -> str:
    """The key whose value at a run's end is the kept model's: ``kept(metric)`` for a
    summarised quality metric, ``metric`` itself otherwise (speed: as reported)."""
    return kept(metric) if summarised(metric) else metric


STOP_PATIENCE = "patience"
STOP_DIVERGED = "diverged"
STOP_MAX_EPOCHS = "max_epochs"
STOP_DETAIL = "stop_detail"  # the stop in words
STOP_SIGNAL = "stop_signal"  # diverged: which check fired (one of DIVERGENCE_SIGNALS)
DIVERGENCE_SIGNALS = (
    "non_finite_loss",
    "loss_spike",
    "collapse",
    "whitening",
    "psnr_floor",
    "non_finite_psnr",
)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # MLflow store when none is given
THREADS_TAG = "torch_threads"  # CPU threads the run trained with: float sums depend on them
