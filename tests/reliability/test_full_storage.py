"""A study whose ``--storage`` fills up mid-study (a 30 MiB tmpfs the test mounts; a tiny
trial's checkpoint is ~11 MiB, so the third save of the first trial runs out of space).

The study stops at the first failed save (``tune/execution/full_storage.py``) instead of retrying
every trial: one line, exit 74, the parent run FAILED and no child run RUNNING. The failed save's
half-written checkpoint directory is removed, so Tune's experiment state, written as the study
stops, is whole; once there is space again, ``--resume`` completes the study from the
checkpoints Tune had registered, every epoch of every trial once in MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ttsr import names
from ttsr.cli_errors import EXIT_IO, EXIT_USAGE
from tune.execution import parent_run

from .conftest import (
    RUN,
    TINY,
    assert_one_error_line,
    mlflow_runs,
    resize_fs,
    run,
    study_args,
    tiny_study,
    write_experiments,
)

pytestmark = pytest.mark.slow

EPOCHS = 4


def _loads(state: Path) -> bool:  # noqa: F821 - a pathlib.Path
    try:
        torch.load(state, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure: not a usable checkpoint
        return False
    return True


def test_full_storage_stops_the_study_cleanly_and_resume_completes(
    tmp_path, small_fs, ray_temp_dir, figures
):
    fs = small_fs(30 * 1024)
    study = tiny_study(config={**TINY, "epochs": EPOCHS}, search={"lr": {"grid": [1e-4, 2e-4]}})
    study["profiles"]["demo"]["max_concurrent"] = 1
    experiments = write_experiments(tmp_path / "exp.yaml", {"full": study})
    args = study_args(tmp_path, ray_temp_dir, "full", experiments)
    args[args.index("--storage") + 1] = str(fs / "results")
    uri = f"sqlite:///{tmp_path}/mlflow.db"

    out = run([*RUN, *args], cwd=tmp_path, timeout=400)
    last = assert_one_error_line(out, EXIT_IO, str(fs / "results"))
    assert "No space left on device" in last and "--resume" in last, last
    assert "stopping the study" in out.stdout
    _, parents, children = mlflow_runs(uri, "full")
    assert [p.info.status for p in parents] == [parent_run.FAILED]
    assert children and all(c.info.status != parent_run.RUNNING for c in children)
    assert "removed its half-written checkpoint_" in out.stdout, out.stdout[-3000:]
    states = sorted(fs.glob("results/full/*/trial_*/checkpoint_*/state.pt"))
    assert all(_loads(s) for s in states), "a half-written checkpoint was left"
    from tune.execution.storage import trial_states

    (experiment,) = fs.glob("results/full/*/")
    # Tune's own state, written as the study stopped, is whole (a cut-short one: no --resume)
    assert trial_states(str(experiment)), out.stdout[-3000:]

    resize_fs(fs, 200 * 1024)  # space again
    # The state as a full disk would have cut it: --resume refuses it in one line (Tune's own
    # restore would start the study over), and nothing is lost to the refusal.
    (state,) = experiment.glob("experiment_state-*.json")
    whole = state.read_bytes()
    state.write_bytes(whole[: len(whole) // 2])
    refused = run([*RUN, *args, "--resume"], cwd=tmp_path, timeout=400)
    assert_one_error_line(refused, EXIT_USAGE, "Tune's experiment state there cannot be read")
    state.write_bytes(whole)
    again = run([*RUN, *args, "--resume"], cwd=tmp_path, timeout=400)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    states = trial_states(str(experiment))
    assert sorted(states.values()) == ["TERMINATED", "TERMINATED"], (states, again.stdout[-3000:])
    client, parents, children = mlflow_runs(uri, "full")
    assert [p.info.status for p in parents] == [parent_run.FINISHED]
    assert len({c.data.tags["trial_id"] for c in children}) == len(children) == 2
    for child in children:
        assert child.info.status == parent_run.FINISHED, (
            child.data.tags["trial_id"],
            {c.data.tags["trial_id"]: c.info.status for c in children},
            again.stdout[-3000:],
        )
        epochs = sorted(m.step for m in client.get_metric_history(child.info.run_id, names.EPOCH))
        assert epochs == list(range(EPOCHS + 1)), epochs
