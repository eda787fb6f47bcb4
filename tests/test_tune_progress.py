"""The console progress callback, driven with stand-in trials (no Ray cluster)."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

from tune.execution.progress import ProgressLines


def _trial(trial_id: str, status: str = "RUNNING", **params):
    return SimpleNamespace(
        trial_id=trial_id, status=status, evaluated_params=params, last_result={}, path=None
    )


def test_a_line_per_event_with_done_total_best_and_eta():
    lines: list[str] = []
    p = ProgressLines(
        metric="val_psnr",
        mode="max",
        total=9,
        max_epochs=2,
        metrics=("val_psnr",),
        echo=lines.append,
    )
    p.setup(total_num_samples=2)  # Tune's count wins
    a, b = _trial("a", per_w=0.001), _trial("b", **{"case/size": 32})
    p.on_step_begin(0, [a, b])
    p.on_trial_start(0, [a, b], a)
    p.on_trial_start(0, [a, b], b)
    assert lines[:2] == ["trial a started: per_w=0.001", "trial b started: size=32"]
    result = {"epoch": 1, "val_psnr": 20.5, "epoch_seconds": 3.2}
    p.on_trial_result(1, [a, b], a, result)
    assert lines[-1] == "trial a epoch 1/2: val_psnr 20.5 (3 s)"
    p.on_trial_result(2, [a, b], b, {"epoch": 1, "val_psnr": 22.0})
    a.last_result = {"epoch": 2, "val_psnr": 21.0, "stop_reason": "max_epochs"}
    p.on_trial_result(3, [a, b], a, a.last_result)
    p.on_trial_complete(3, [a, b], a)
    assert lines[-1].startswith("[1/2 done] trial a ended (max_epochs): val_psnr 21 | ")
    assert "best val_psnr 22 (b)" in lines[-1] and "ETA " in lines[-1]
    b.path = "/x/trial_b"
    p.on_trial_error(4, [a, b], b)
    assert lines[-1].startswith("[2/2 done] trial b failed; see /x/trial_b/error.txt | ")
    assert lines[-1].endswith("all trials done")
    pickle.loads(pickle.dumps(p))  # Tune saves callbacks with the experiment


def test_resumed_study_counts_earlier_trials_and_min_mode():
    p = ProgressLines(metric="epoch_seconds", mode="min", total=3, echo=lambda line: None)
    old, new = _trial("old", status="TERMINATED"), _trial("new")
    p.on_step_begin(0, [old, new])
    p.on_trial_result(1, [old, new], new, {"epoch_seconds": 5.0})
    p.on_trial_result(2, [old, new], new, {"epoch_seconds": 7.0})
    p.on_trial_complete(2, [old, new], new)
    assert len(p.done) == 2 and p.best == (5.0, "new")
    assert "ETA unknown" in p.status()  # nothing started and ended in this invocation


def test_eta_counts_running_trials_and_waves_of_pending_ones():
    p = ProgressLines(metric="val_psnr", mode="max", total=7, max_concurrent=2)
    p.durations = [100.0]  # one trial took 100 s
    p.running = {"r": 40.0}  # running since t=40
    # at t=100: the running one ends in 40 s; 5 left -> 1 running + 4 pending = 2 waves of 2
    assert p.eta(100.0, left=5) == 40.0 + 2 * 100.0
    p.running = {}
    assert p.eta(100.0, left=3) == 2 * 100.0
