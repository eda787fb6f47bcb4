"""The TTSR training loop: `train(config)` for the CLI, tests and Ray trials.

One epoch, top to bottom in `train`: order the data (the round's steps, a function of
(seed, step)), run the steps (`ttsr.train.step.TrainStep`: the step the benchmark times),
validate, decide (early stopping and divergence), checkpoint, log, call the callbacks.
Epoch 0 validates the model before training: the baseline every divergence check compares with.

No host syncs in the hot loop: losses are summed as device tensors and read every
``Trainer.check_every`` steps to catch non-finite losses and loss spikes (a NaN stays in the
sum, so none is missed; at most that many steps run on bad weights). Resume is exact: all that
decides the future is in `checkpoints/latest/state.pt` (`ttsr.train.setup.TrainingState`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ttsr import names
from ttsr.config import TrainConfig
from ttsr.fast_paths import FAST_PATHS_TAG
from ttsr.train.callbacks import Callback, TrainResult
from ttsr.train.early_stopping import LossSpikeMonitor, collapse_reason, whitening_reason
from ttsr.train.evaluate import Validation
from ttsr.train.setup import Run, print_summary, start_run
from ttsr.train.step import StepLosses

LOSS_KEYS = (names.LOSS_TOTAL, names.LOSS_REC, names.LOSS_PER, names.LOSS_TPL, names.LOSS_ADV)


def train(
    config: TrainConfig,
    *,
    callbacks: Sequence[Callback] = (),
    resume_from: str | Path | None = None,
    progress: bool = True,
    checkpoint_extra: dict[str, Any] | None = None,
) -> TrainResult:
    """Train TTSR as ``config`` says; see the module docstring and docs/TRAINING.md.

    callbacks: `ttsr.train.Callback`s (MLflow logging, Tune reports, ...), called in order.
    resume_from: a checkpoint directory of an earlier run (its ``latest`` or ``best``).
    checkpoint_extra: primitives saved into every state.pt (e.g. the CLI's MLflow run id).
    """
    run = start_run(config, resume_from=resume_from, checkpoint_extra=checkpoint_extra)
    trainer, state, stopper = run.trainer, run.state, run.stopper
    first_step = state.step  # the NaN canary watches this run's first steps
    for callback in callbacks:
        callback.on_train_start(run.info())
    for epoch in range(state.epoch + 1, run.schedule.rounds + 1):
        if stopper.should_stop:
            break
        t0 = time.perf_counter()
        lrs = [g["lr"] for g in trainer.optimizer.param_groups]
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.device)

        # Order the data and run the steps (none in epoch 0: the model before training).
        meter = LossMeter(trainer.device, state.spikes, check_every=trainer.check_every)
        if epoch > 0:
            init = epoch <= config.init_epochs  # reconstruction-only warm-up epochs
            bar = tqdm(
                run.batches(epoch),
                desc=f"epoch {epoch}/{run.schedule.rounds}",
                disable=not progress,
                leave=False,
                dynamic_ncols=True,
            )
            for batch in bar:
                meter.add(trainer.train_step(batch, init=init), images=len(batch["HR"]))
                state.step, state.images = state.step + 1, state.images + len(batch["HR"])
                if trainer.check_due(state.step - first_step, meter.steps):
                    if _diverged(run, meter, state.step):
                        break
                    if progress:  # the loss changes only when it is read
                        bar.set_postfix(loss=f"{meter.loss:.4f}")
            bar.close()
            if not stopper.should_stop:
                _diverged(run, meter, state.step)
        train_seconds = time.perf_counter() - t0

        # Validate (not when the weights are already bad), decide, sample grids.
        val = None if stopper.should_stop else run.evaluator(trainer)
        improved = _decide(run, epoch, val)
        images = run.write_grids(epoch) if val is not None else {}
        trainer.model.train()
        if epoch > config.init_epochs:
            trainer.scheduler.step()
        last = stopper.should_stop or epoch == run.schedule.rounds
        if last:
            stopper.finish()

        # Record, checkpoint, log, callbacks.
        metrics = _epoch_metrics(run, epoch, meter, val, lrs, train_seconds, t0, last)
        state.epoch = epoch
        state.history.append(metrics)
        run.save(improved=improved)
        print_summary(metrics, run.schedule.rounds)  # one line per epoch, also in trial logs
        for callback in callbacks:
            callback.on_epoch_end(dict(metrics), run.latest_dir, images)

    stopper.finish()
    result = run.result()
    for callback in callbacks:
        callback.on_train_end(result)
    return result


class LossMeter:
    """Per-epoch loss sums on the device; `check` reads them (one host sync) to catch
    non-finite losses and spikes of the reconstruction loss among the steps since the last
    check."""

    def __init__(self, device: torch.device, spikes: LossSpikeMonitor, *, check_every: int):
        self.sums = {k: torch.zeros((), device=device) for k in (*LOSS_KEYS, names.LOSS_D)}
        self.spikes, self.check_every = spikes, check_every
        self.pending: list[torch.Tensor] = []  # the watched loss of each unchecked step
        self.steps = self.d_steps = self.images = 0
        self.loss: float | None = None  # the mean total loss at the last check

    def add(self, losses: StepLosses, *, images: int) -> None:
        for key, value in losses.generator.items():
            self.sums[key] += value
        for value in losses.critic:
            self.sums[names.LOSS_D] += value
        gen = losses.generator
        self.pending.append(gen.get(names.LOSS_REC, gen[names.LOSS_TOTAL]))
        self.d_steps += len(losses.critic)
        self.steps += 1
        self.images += images

    def check(self, step: int) -> tuple[str, str] | None:
        """(signal, one-line reason) if the steps since the last check diverged; ``step`` =
        steps done."""
        if not self.steps:
            return None
        running = self.sums[names.LOSS_TOTAL] + self.sums[names.LOSS_D]
        *watched, running = torch.stack([*self.pending, running]).tolist()
        first = step - len(watched) + 1
        self.pending = []
        if not math.isfinite(running):
            return "non_finite_loss", f"non-finite training loss by step {step}"
        self.loss = float(self.sums[names.LOSS_TOTAL]) / self.steps
        spike = self.spikes.update(watched, first_step=first)
        return ("loss_spike", spike) if spike else None

    def means(self) -> dict[str, float]:
        out = {k: float(self.sums[k]) / max(self.steps, 1) for k in LOSS_KEYS}
        out[names.LOSS_D] = float(self.sums[names.LOSS_D]) / max(self.d_steps, 1)
        return out


def _diverged(run: Run, meter: LossMeter, step: int) -> bool:
    problem = meter.check(step)
    if problem is not None:
        signal, detail = problem
        run.stopper.diverge(f"{detail} (epoch {run.state.epoch + 1})", signal)
    return problem is not None


def _decide(run: Run, epoch: int, val: Validation | None) -> bool:
    """Early stopping and the output checks. -> True when this epoch is the new best."""
    if val is None:  # diverged during the steps
        return False
    config, out = run.config, val.output
    if epoch == 0:
        run.state.baseline = out  # the reference point of the whitening check
    else:
        signal, reason = "collapse", collapse_reason(out)
        if reason is None and config.saturation_rise is not None:
            signal = "whitening"
            reason = whitening_reason(out, run.state.baseline or out, config.saturation_rise)
        if reason is not None:
            run.stopper.diverge(f"{reason} at epoch {epoch}", signal)
            return False
    return run.stopper.update(epoch, val.metrics[config.early_stop_metric])


def _epoch_metrics(
    run: Run,
    epoch: int,
    meter: LossMeter,
    val: Validation | None,
    lrs: list[float],
    train_seconds: float,
    t0: float,
    last: bool,
) -> dict[str, Any]:
    trainer, state, stopper = run.trainer, run.state, run.stopper
    cuda = trainer.device.type == "cuda"
    metrics: dict[str, Any] = {
        names.EPOCH: epoch,
        names.STEP: state.step,
        names.IMAGES_SEEN: state.images,
    }
    if epoch > 0:
        metrics.update(meter.means())
    metrics.update(val.metrics if val is not None else run.evaluator.missing_metrics())
    metrics[names.BICUBIC_PSNR] = state.bicubic_psnr
    metrics[names.EPOCH_SECONDS] = time.perf_counter() - t0
    metrics[names.TRAIN_IMAGES_PER_SECOND] = meter.images / train_seconds if meter.images else 0.0
    metrics[names.PEAK_GPU_MEMORY_GIB] = (
        torch.cuda.max_memory_allocated(trainer.device) / 2**30 if cuda else 0.0
    )
    metrics[names.LR_MAIN], metrics[names.LR_LTE] = lrs
    metrics[names.LR_D] = run.config.lr_d if trainer.discriminator is not None else 0.0
    metrics[FAST_PATHS_TAG] = run.tags[FAST_PATHS_TAG]  # which fast paths this run trusted
    if stopper.has_best:  # the kept epoch so far and its quality, every epoch
        metrics[names.BEST_EPOCH] = stopper.best_epoch
        metrics.update(kept_summary([*state.history, metrics], stopper.best_epoch))
    if last:
        metrics[names.STOP_REASON] = stopper.stop_reason
        metrics[names.STOP_DETAIL] = stopper.detail
        if stopper.signal:
            metrics[names.STOP_SIGNAL] = stopper.signal
    return metrics


def kept_summary(history: Sequence[dict[str, Any]], best_epoch: int) -> dict[str, float]:
    """``names.kept(m)`` for every summarised quality metric of epoch ``best_epoch``."""
    row = next((h for h in history if h[names.EPOCH] == best_epoch), {})
    return {
        names.kept(k): v
        for k, v in row.items()
        if names.summarised(k) and isinstance(v, int | float) and not isinstance(v, bool)
    }
