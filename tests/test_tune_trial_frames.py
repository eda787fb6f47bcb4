"""Trial histories -> the trials and epochs tables: kept epoch, speed means, bicubic margin."""

from __future__ import annotations

from ttsr import names
from tune.reporting.data import TrialRecord, frames, kept, objective_column


def test_kept_epoch_is_the_one_the_loop_reported():
    # the loop watched val_psnr_other (early_stop_metric) and kept epoch 1, not the
    # highest-val_psnr epoch 2
    history = [
        {names.EPOCH: 0, names.VAL_PSNR: 18.0, "val_psnr_other": 17.0, names.BICUBIC_PSNR: 20.0},
        {names.EPOCH: 1, names.VAL_PSNR: 21.0, "val_psnr_other": 19.0},
        {
            names.EPOCH: 2,
            names.VAL_PSNR: 22.0,
            "val_psnr_other": 18.5,
            names.STOP_REASON: "patience",
            names.BEST_EPOCH: 1,
            names.BEST_VAL_PSNR: 19.0,  # the loop's: of early_stop_metric
            names.STOP_DETAIL: "no val_psnr_other improvement",
        },
    ]
    trials, epochs = frames([TrialRecord("a", "TERMINATED", {}, history)])
    t = trials.iloc[0]
    assert t[names.BEST_EPOCH] == 1
    assert t[names.BEST_VAL_PSNR] == 21.0  # val_psnr of the kept epoch
    assert t[kept("val_psnr_other")] == 19.0
    assert t[names.BICUBIC_PSNR] == 20.0 and t["vs_bicubic_db"] == 1.0
    assert t["epochs_run"] == 2 and t[names.STOP_DETAIL] == "no val_psnr_other improvement"
    assert t[names.VAL_PSNR] == 22.0  # final-epoch value
    assert list(epochs[names.EPOCH]) == [0, 1, 2]


def test_speed_is_averaged_over_training_epochs_only():
    history = [
        {names.EPOCH: 0, names.VAL_PSNR: 10.0, names.EPOCH_SECONDS: 0.5,
         names.TRAIN_IMAGES_PER_SECOND: 0.0, names.PEAK_GPU_MEMORY_GIB: 0.4},
        {names.EPOCH: 1, names.VAL_PSNR: 11.0, names.EPOCH_SECONDS: 2.0,
         names.TRAIN_IMAGES_PER_SECOND: 10.0, names.PEAK_GPU_MEMORY_GIB: 2.0},
        {names.EPOCH: 2, names.VAL_PSNR: 12.0, names.EPOCH_SECONDS: 4.0,
         names.TRAIN_IMAGES_PER_SECOND: 5.0, names.PEAK_GPU_MEMORY_GIB: 1.5},
    ]  # fmt: skip
    trials, _ = frames([TrialRecord("a", "TERMINATED", {"size": 32}, history, None, 2)])
    t = trials.iloc[0]
    assert t["mean_epoch_seconds"] == 3.0 and t["mean_train_images_per_s"] == 7.5
    assert t["max_peak_gpu_memory_gib"] == 2.0
    assert t["stop_reason"] == names.STOP_MAX_EPOCHS and t["label"] == "size=32"
    assert objective_column(names.EPOCH_SECONDS) == "mean_epoch_seconds"
    assert objective_column(names.VAL_LPIPS_PROXY) == "best_val_perceptual"
    assert kept(names.VAL_PSNR) == names.BEST_VAL_PSNR


def test_a_trial_without_history():
    trials, epochs = frames([TrialRecord("a", "ERROR", {"x": 1}, [])])
    t = trials.iloc[0]
    assert t["stop_reason"] == "error" and t["epochs_run"] == 0
    assert t[names.BEST_EPOCH] is None and epochs.empty
