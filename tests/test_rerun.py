"""``python -m ttsr.train --from-run runs:/RUN_ID``: a tracked run trained again from its
``config.json`` (same seed, data subset, warm start) as a new run beside it; bad runs are one
line, exit 2, nothing written. In-process (``ttsr.train.cli.main``): the CLI's own process
handling is test_train.py's."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import mlflow
import pytest
import torch
from tiny import tiny_config

from ttsr import names, tracking
from ttsr.cli_errors import EXIT_USAGE
from ttsr.tracking import (
    CONFIG_ARTIFACT,
    GIT_COMMIT_TAG,
    GIT_DIFF_ARTIFACT,
    RERUN_OF_TAG,
    MlflowCallback,
    MlflowTracker,
    git_commit,
)
from ttsr.train import train
from ttsr.train.cli import main

warnings.filterwarnings("ignore", message="VGG19 ImageNet weights not found")
EPOCHS = 2
DIFF = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A tracked tiny run (2 epochs, a warm start from another tiny run's best checkpoint),
    its code's git tree dirty (``DIFF``): (store URI, run id, warm-start path)."""
    root = tmp_path_factory.mktemp("rerun")
    uri = f"sqlite:///{root}/mlflow.db"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tracking, "git_diff", lambda: DIFF)
        try:
            warm = train(tiny_config(root / "warm", sample_every=0), progress=False)
            config = tiny_config(
                root, epochs=EPOCHS, sample_every=0, init_checkpoint=str(warm.best_checkpoint)
            )
            tracker = MlflowTracker(tracking_uri=uri, experiment="reruns", run_name="tiny")
            with tracker:
                callback = MlflowCallback(tracker, log_model=False)
                train(config, callbacks=[callback], progress=False)
        finally:
            torch.set_num_threads(threads)
    return uri, tracker.run_id, Path(warm.best_checkpoint)


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    client = mlflow.MlflowClient(uri)
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_a_run_trained_again_gives_the_same_curve_as_a_new_run_beside_it(
    original, tmp_path, monkeypatch, capsys
):
    uri, run_id, _ = original
    monkeypatch.chdir(tmp_path)
    argv = ["--from-run", f"runs:/{run_id}", "--mlflow-uri", uri, "--no-progress"]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the original trained on 1: the re-run takes the run's count
    try:
        assert main(argv) == 0, capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)
    assert "1 CPU thread(s), as run" in capsys.readouterr().out
    client = mlflow.MlflowClient(uri)
    source = client.get_run(run_id)
    (again,) = [
        r
        for r in client.search_runs([source.info.experiment_id])
        if r.data.tags.get(RERUN_OF_TAG) == run_id
    ]
    assert again.info.run_name == "re-run of tiny" and again.info.status == "FINISHED"
    assert source.data.tags[names.THREADS_TAG] == again.data.tags[names.THREADS_TAG] == "1"
    before, after = (
        _history(uri, run_id, names.VAL_PSNR),
        _history(uri, again.info.run_id, names.VAL_PSNR),
    )
    assert [s for s, _ in after] == list(range(EPOCHS + 1))
    assert [s for s, _ in before] == [s for s, _ in after]
    for (step, a), (_, b) in zip(before, after, strict=True):
        assert abs(a - b) <= 1e-4, (step, a, b)  # the same curve, epoch by epoch
    assert (tmp_path / "runs" / f"rerun-{run_id[:8]}" / "checkpoints").is_dir()  # not its folder
    # the UI's Source field: the name, the commit beside it
    assert again.data.tags.get(GIT_COMMIT_TAG) == git_commit()
    assert again.data.tags["mlflow.source.name"] == "ttsr.train"
    # the source run ran from a dirty tree: what was uncommitted is beside its commit
    patch = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=GIT_DIFF_ARTIFACT, tracking_uri=uri, dst_path=str(tmp_path)
    )
    assert Path(patch).read_text() == DIFF


def test_set_and_flags_change_fields_of_the_run_trained_again(original, tmp_path, capsys):
    uri, run_id, _ = original
    out = tmp_path / "short"
    argv = ["--from-run", run_id, "--mlflow-uri", uri, "--no-progress", "--out", str(out)]
    assert main([*argv, "--set", "epochs=1", "--experiment", "elsewhere"]) == 0
    client = mlflow.MlflowClient(uri)
    (again,) = client.search_runs([client.get_experiment_by_name("elsewhere").experiment_id])
    assert again.data.tags[RERUN_OF_TAG] == run_id
    assert [s for s, _ in _history(uri, again.info.run_id, names.VAL_PSNR)] == [0, 1]
    saved = json.loads((out / CONFIG_ARTIFACT).read_text())
    assert saved["epochs"] == 1 and saved["out_dir"] == str(out)


def _bad(argv: list[str], tmp_path: Path, capsys) -> str:
    """Exit 2, one error line (returned), nothing written under tmp_path."""
    before = sorted(tmp_path.rglob("*"))
    code = main([*argv, "--no-progress", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USAGE and len(err) == 1 and err[0].startswith("error: "), (code, err)
    assert sorted(tmp_path.rglob("*")) == before
    return err[0]


def test_bad_runs_are_one_line_and_nothing_is_written(original, tmp_path, capsys, monkeypatch):
    uri, run_id, warm = original
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = ["--mlflow-uri", uri]
    assert "give --mlflow-uri" in _bad(["--from-run", run_id], tmp_path, capsys)
    assert "no run 'nope'" in _bad(["--from-run", "runs:/nope", *store], tmp_path, capsys)

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("reruns").experiment_id
    parent = client.create_run(experiment, run_name="a study").info.run_id  # no config.json
    client.set_terminated(parent)
    line = _bad(["--from-run", f"runs:/{parent}", *store], tmp_path, capsys)
    assert "'a study' has no config.json" in line and "not a training or trial run" in line

    newer = client.create_run(experiment, run_name="newer").info.run_id
    values = {**tiny_config(tmp_path).to_dict(), "future_knob": 3}
    client.log_dict(newer, values, CONFIG_ARTIFACT)
    line = _bad(["--from-run", newer, *store], tmp_path, capsys)
    assert "future_knob" in line and "newer version" in line

    moved = warm.parent / "moved"
    warm.rename(moved)
    try:
        line = _bad(["--from-run", run_id, *store], tmp_path, capsys)
        assert f"warm start {warm} is not here" in line and "--init-checkpoint" in line
    finally:
        moved.rename(warm)
    line = _bad(["--from-run", run_id, "--resume", str(warm), *store], tmp_path, capsys)
    assert "give one" in line


def test_git_diff_is_the_uncommitted_change_and_empty_for_a_clean_tree(tmp_path):
    import subprocess

    from ttsr.tracking import git_diff

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    assert git_diff(tmp_path) == ""  # no repository
    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
    assert git_diff(tmp_path) == ""  # clean
    (tmp_path / "a.py").write_text("x = 2\n")
    diff = git_diff(tmp_path)
    assert "-x = 1" in diff and "+x = 2" in diff
