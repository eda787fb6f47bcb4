import math

import pytest
import torch

from ttsr import names
from ttsr.config import DEFAULT_MIN_DELTA_DB, TrainConfig
from ttsr.train.early_stopping import (
    EarlyStopper,
    LossSpikeMonitor,
    OutputCollapseMonitor,
    collapse_reason,
    whitening_reason,
)


def run(sequence, **kwargs):
    """Feed a scripted val_psnr sequence; -> (stopper, epoch it stopped at, best epochs seen)."""
    stopper = EarlyStopper(
        **{"patience": 3, "min_delta": 0.0, "divergence_floor_db": 3.0, **kwargs}
    )
    bests = []
    for epoch, value in enumerate(sequence, start=1):
        if stopper.update(epoch, value):
            bests.append(epoch)
        if stopper.should_stop:
            return stopper, epoch, bests
    stopper.finish()
    return stopper, len(sequence), bests


def test_peak_at_10_patience_3_stops_at_13():
    seq = [20 + e for e in range(1, 11)] + [29.5, 29.8, 29.9, 30.5, 31]
    stopper, stopped, bests = run(seq)
    assert stopped == 13
    assert stopper.stop_reason == names.STOP_PATIENCE
    assert stopper.best_epoch == 10 and stopper.best_val_psnr == 30
    assert bests == list(range(1, 11))


def test_min_delta_counts_small_gains_as_no_improvement():
    stopper, stopped, _ = run([30, 30.05, 30.1, 30.12], min_delta=0.2)
    assert (stopped, stopper.best_epoch, stopper.stop_reason) == (4, 1, names.STOP_PATIENCE)


def test_max_epochs_and_patience_off():
    stopper, stopped, _ = run([30, 29, 29, 29, 29, 29], patience=None)
    assert stopped == 6 and stopper.stop_reason == names.STOP_MAX_EPOCHS
    assert stopper.best_epoch == 1


def test_floor_drop_held_for_two_validations_diverges_and_keeps_best():
    stopper, stopped, bests = run([25, 27, 28, 24.9, 24.5, 30])
    assert stopped == 5 and stopper.stop_reason == names.STOP_DIVERGED
    assert stopper.signal == "psnr_floor"
    assert (stopper.best_epoch, stopper.best_val_psnr, bests) == (3, 28, [1, 2, 3])
    assert "below its best 28.00 dB (epoch 3), for 2 validations in a row" in stopper.detail
    # A drop within the floor is only a bad epoch.
    stopper, stopped, _ = run([28, 25.5, 29], patience=5)
    assert stopper.stop_reason == names.STOP_MAX_EPOCHS and stopper.best_epoch == 3


def test_a_one_epoch_dip_below_the_floor_that_recovers_is_no_divergence():
    # The dataset-fraction demo (fraction 0.25, seed 1, 2026-12-06) was stopped as diverged at
    # epoch 6 on 26.74 -> 23.20 dB, a dip the other seed recovered from. Those two values are
    # the issue's; the rest of the curve is illustrative (from scratch: epoch 0 is the
    # untrained model near 12 dB; budgeted demo runs validate 10 times).
    dip = [11.6, 22.0, 24.5, 25.6, 26.3, 26.74, 23.20, 26.5, 26.9, 27.0, 27.1]
    stopper = EarlyStopper(patience=None, divergence_floor_db=3.0)
    for epoch, value in enumerate(dip):
        stopper.update(epoch, value)
        assert not stopper.should_stop, (epoch, stopper.detail)
    stopper.finish()
    assert stopper.stop_reason == names.STOP_MAX_EPOCHS and stopper.best_epoch == 10
    # The same start, then a real collapse: it stays down, so it diverges one epoch later.
    collapse = [*dip[:7], 21.5, 19.0, 16.0, 12.0]
    stopper = EarlyStopper(patience=None, divergence_floor_db=3.0)
    for epoch, value in enumerate(collapse):
        stopper.update(epoch, value)
        if stopper.should_stop:
            break
    assert (epoch, stopper.stop_reason, stopper.signal) == (7, names.STOP_DIVERGED, "psnr_floor")
    assert stopper.best_epoch == 5 and stopper.best_val_psnr == 26.74
    # One bad epoch between two dips resets the count; it takes two in a row.
    stopper, stopped, _ = run([12, 28, 24.5, 26, 24.5, 26], patience=None)
    assert stopper.stop_reason == names.STOP_MAX_EPOCHS
    # divergence_epochs 1 is the old at-once floor.
    stopper, stopped, _ = run([12, 28, 24.5, 30], patience=None, divergence_epochs=1)
    assert (stopped, stopper.stop_reason) == (3, names.STOP_DIVERGED)


def test_below_the_start_diverges_at_once():
    # A warm start at 26 dB wrecked by its first epoch: no second epoch needed.
    stopper = EarlyStopper(patience=3, divergence_floor_db=3.0)
    stopper.update(0, 26.0)
    stopper.update(1, 26.5)
    assert not stopper.update(2, 22.9)
    assert stopper.stop_reason == names.STOP_DIVERGED and stopper.signal == "psnr_floor"
    assert "below where the run started (26.00 dB)" in stopper.detail
    assert stopper.best_epoch == 1


def test_min_delta_default_lets_a_plateau_run_out_of_patience():
    # 0.02-dB wiggles around a plateau: with min_delta 0 each new high resets patience.
    plateau = [20.0, 24.0, 26.0, 26.62, 26.60, 26.64, 26.63, 26.66, 26.65, 26.68, 26.67, 26.70]
    stopper, stopped, _ = run(plateau, min_delta=0.0)
    assert stopper.stop_reason == names.STOP_MAX_EPOCHS
    default = EarlyStopper(patience=3)
    assert default.min_delta == DEFAULT_MIN_DELTA_DB == TrainConfig().min_delta > 0.02
    for epoch, value in enumerate(plateau, start=1):
        default.update(epoch, value)
        if default.should_stop:
            break
    assert (epoch, default.stop_reason, default.best_epoch) == (7, names.STOP_PATIENCE, 4)
    # A real gain still counts.
    stopper, stopped, bests = run([26.0, 26.1, 26.2, 26.3], min_delta=DEFAULT_MIN_DELTA_DB)
    assert bests == [1, 2, 3, 4]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_val_psnr_diverges_at_once(bad):
    stopper, stopped, _ = run([25, 26, bad, 30])
    assert stopped == 3 and stopper.stop_reason == names.STOP_DIVERGED
    assert stopper.best_epoch == 2


def test_diverge_is_final_and_blocks_new_bests():
    stopper = EarlyStopper(patience=3)
    stopper.update(1, 20.0)
    stopper.diverge("loss is nan at step 7", "non_finite_loss")
    assert stopper.signal == "non_finite_loss"
    assert stopper.stop_reason == names.STOP_DIVERGED
    assert stopper.update(2, 40.0) is False and stopper.best_epoch == 1
    stopper.finish()
    assert stopper.stop_reason == names.STOP_DIVERGED


def test_state_dict_round_trip_continues_identically():
    seq = [25, 26, 27, 26.5, 26.6, 26.7]
    full, stopped_full, _ = run(seq)
    part = EarlyStopper(patience=3, min_delta=0.0, divergence_floor_db=3.0)
    for epoch, value in enumerate(seq[:4], start=1):
        part.update(epoch, value)
    resumed = EarlyStopper(patience=3, min_delta=0.0, divergence_floor_db=3.0)
    resumed.load_state_dict(part.state_dict())
    stopped = None
    for epoch, value in enumerate(seq[4:], start=5):
        resumed.update(epoch, value)
        if resumed.should_stop:
            stopped = epoch
            break
    assert stopped == stopped_full == 6
    assert resumed.state_dict() == full.state_dict()


def test_state_dict_keeps_the_start_and_a_dip_in_progress():
    part = EarlyStopper(patience=None)
    for epoch, value in enumerate([12.0, 27.0, 23.5]):
        part.update(epoch, value)
    assert not part.should_stop and part.below_floor == 1
    resumed = EarlyStopper(patience=None)
    resumed.load_state_dict(part.state_dict())
    assert resumed.start_val_psnr == 12.0
    resumed.update(3, 23.4)  # the second validation in a row below the floor
    assert resumed.stop_reason == names.STOP_DIVERGED


def test_collapse_monitor_white_flat_and_normal():
    white = OutputCollapseMonitor()
    white.update(torch.ones(2, 3, 8, 8))
    white.update(torch.ones(1, 3, 8, 8))
    assert "saturated" in white.collapsed()

    gray = OutputCollapseMonitor()
    gray.update(torch.full((2, 3, 8, 8), 0.2))
    assert "std" in gray.collapsed()

    torch.manual_seed(0)
    normal = OutputCollapseMonitor()
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    x[0, 0, 0, 0] = 1.0  # a few saturated pixels are fine
    normal.update(x)
    assert normal.collapsed() is None
    assert OutputCollapseMonitor().collapsed() is None  # nothing validated, nothing collapsed


def test_epoch_zero_is_the_first_best_so_an_epoch_1_collapse_is_caught():
    stopper = EarlyStopper(patience=3, divergence_floor_db=3.0)
    assert stopper.update(0, 26.0)  # the model before training (e.g. a warm start)
    assert not stopper.update(1, 22.5)
    assert stopper.stop_reason == names.STOP_DIVERGED
    assert "below its best 26.00 dB (epoch 0)" in stopper.detail
    assert stopper.best_epoch == 0


def test_watched_metric_is_named_in_the_detail():
    stopper = EarlyStopper(patience=1, metric="val_psnr_other")
    stopper.update(0, 20.0)
    stopper.update(1, 19.5)
    assert stopper.stop_reason == names.STOP_PATIENCE and "val_psnr_other" in stopper.detail


def test_loss_spike_fires_far_above_the_running_median_only():
    monitor = LossSpikeMonitor(20.0)
    healthy = [0.5 - 0.01 * i for i in range(30)]  # a falling loss, with a little noise
    healthy[12] *= 3  # a bad batch: 3x is not a spike
    assert monitor.update(healthy, first_step=1) is None
    spike = monitor.update([0.3, 9.0, 0.3], first_step=31)
    assert spike is not None and "step 32" in spike and "median" in spike
    # Too little history: no verdict on the first steps of a run.
    fresh = LossSpikeMonitor(20.0)
    assert fresh.update([0.01] * 5 + [10.0], first_step=1) is None
    # Off.
    assert LossSpikeMonitor(None).update([0.1] * 20 + [1e6], first_step=1) is None
    # State round trip keeps the window.
    copy = LossSpikeMonitor(20.0)
    copy.load_state_dict(monitor.state_dict())
    assert list(copy.recent) == list(monitor.recent)


def _stats(images, targets, mask=None):
    monitor = OutputCollapseMonitor()
    monitor.update(images, targets, mask)
    return monitor.stats()


def test_whitening_of_the_box_and_of_half_images_against_the_baseline():
    torch.manual_seed(0)
    hr = torch.rand(2, 3, 40, 40) * 1.6 - 0.8  # no white pixels in the targets
    mask = torch.zeros(2, 1, 40, 40)
    mask[:, :, 20:32, 20:32] = 1.0  # 9 % of the image, as the seed's box
    baseline = _stats(hr.clone(), hr, mask)  # a healthy epoch 0
    assert baseline.white == 0.0 and baseline.white_mask == 0.0
    assert whitening_reason(baseline, baseline, 0.05) is None

    white_box = hr.clone()
    white_box[:, :, 20:32, 20:32] = 1.0
    stats = _stats(white_box, hr, mask)
    assert stats.white == pytest.approx(0.09) and stats.white_mask == 1.0
    assert collapse_reason(stats) is None  # far from the 90 % "collapsed" rule
    reason = whitening_reason(stats, baseline, 0.05)
    assert reason is not None and "inside the inpainting box" in reason

    half = hr.clone()
    half[:, :, :20] = 1.0
    stats = _stats(half, hr)
    reason = whitening_reason(stats, _stats(hr.clone(), hr), 0.05)
    assert reason is not None and "50.0% of the pixels of the output" in reason

    # Targets that are white themselves raise the baseline: copying them is not whitening.
    bright = hr.clone()
    bright[:, :, :20] = 1.0
    assert (
        whitening_reason(_stats(bright.clone(), bright), _stats(bright * 0.5, bright), 0.05) is None
    )


def test_keep_last_keeps_every_healthy_epoch_and_measures_the_floor_from_the_peak():
    stopper = EarlyStopper(patience=None, keep_last=True, divergence_floor_db=3.0)
    # a fine-tune that trades PSNR: every epoch is kept (a best-on-PSNR run would keep epoch 0)
    assert [stopper.update(e, v) for e, v in enumerate([26.5, 25.4, 25.7])] == [True] * 3
    assert stopper.best_epoch == 2 and stopper.peak_epoch == 0 and stopper.best_val_psnr == 26.5
    restored = EarlyStopper(patience=None, keep_last=True)
    restored.load_state_dict(stopper.state_dict())
    assert (restored.best_epoch, restored.peak_epoch) == (2, 0)
    # a collapse is still a divergence, measured from the peak; the kept epoch stays healthy
    assert stopper.update(3, 20.0) is False
    assert stopper.stop_reason == names.STOP_DIVERGED and stopper.best_epoch == 2
    assert "its best 26.50 dB (epoch 0)" in stopper.detail


def test_keep_last_needs_patience_off():
    from ttsr.config import ConfigError, TrainConfig

    assert TrainConfig(keep="last", patience=None).keep == "last"
    with pytest.raises(ConfigError, match=r"^keep: 'last' keeps the final epoch"):
        TrainConfig(keep="last", patience=3)
    with pytest.raises(ConfigError, match="keep"):
        TrainConfig(keep="latest", patience=None)
