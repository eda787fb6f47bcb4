"""MLflow parent/child bookkeeping in a temp SQLite store (no Ray): the ParentRun context
manager's exit paths, child lookup and closing, and the MLflow constants defined once."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ttsr import tracking
from tune.execution import parent_run, storage
from tune.study.studies import load_study


def test_parent_children_lookup_and_closing(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    started = _start(uri)
    exp, parent = started.experiment_id, started.run_id
    client = MlflowClient(uri)
    assert client.get_run(parent).data.params["config.size"] == "32"

    def child(trial_id: str, status: str | None = None) -> str:
        run = client.create_run(
            exp, tags={parent_run.PARENT_TAG: parent, parent_run.TRIAL_ID_TAG: trial_id}
        )
        if status:
            client.set_terminated(run.info.run_id, status=status)
        return run.info.run_id

    done, stopped, crashed, pending, stray = (
        child("a", "FINISHED"), child("b", "KILLED"), child("c"), child("d"), child("e"),
    )  # fmt: skip
    assert parent_run.find_child(uri, exp, parent, "c") == crashed
    assert parent_run.find_child(uri, exp, parent, "zzz") is None

    states = {"a": "TERMINATED", "b": "TERMINATED", "c": "ERROR", "d": "PENDING"}
    assert parent_run.close_children(uri, exp, parent, states) == 4  # b, c, d and stray e
    status = {r: client.get_run(r).info.status for r in (done, stopped, crashed, pending, stray)}
    assert status == {
        done: "FINISHED", stopped: "FINISHED", crashed: "FAILED", pending: "KILLED",
        stray: "KILLED",
    }  # fmt: skip

    client.set_terminated(parent, status=parent_run.KILLED)
    with parent_run.ParentRun.reopen(started.info):
        assert client.get_run(parent).info.status == "RUNNING"
    assert client.get_run(parent).info.status == "FINISHED"


def _study():
    return load_study(Path(__file__).parent.parent / "experiments.yaml", "loss-weights", "demo")


def _start(uri: str) -> parent_run.ParentRun:
    return parent_run.ParentRun.start(
        uri, _study(), run_name="lw-1", tags={"git_commit": "abc"}, overrides={"lr": 3e-4}
    )


def test_parent_run_owns_params_tags_and_ends_on_every_path(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    client = MlflowClient(uri)
    with _start(uri) as parent:
        run = client.get_run(parent.run_id)
        assert run.info.status == "RUNNING"
        assert run.data.tags["study"] == "loss-weights" and run.data.tags["profile"] == "demo"
        assert run.data.tags["git_commit"] == "abc"
        assert run.data.tags[parent_run.ROLE_TAG] == "study"
        # The UI's saved view of this invocation: its trials grouped by configuration.
        tags = client.get_experiment(parent.experiment_id).tags
        view = json.loads(tags[f"mlflow.sharedViewState.{parent.run_id}"])
        assert parent.run_id in view["searchFilter"] and "'trial'" in view["searchFilter"]
        assert view["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "config"}]
        assert view["selectedColumns"][:5] == [
            "tags.`config`", "params.`per_w`", "params.`tpl_w`", "params.`adv_w`",
            "params.`seed`",
        ]  # fmt: skip
        assert "metrics.`best_val_psnr`" in view["selectedColumns"]
        assert "metrics.`best_val_perceptual`" in view["selectedColumns"]
        assert run.data.params["set.lr"] == "0.0003" and run.data.params["report"] == "tradeoff"
        assert run.data.params["repeats"] == "3" and "config.size" in run.data.params
        assert parent.info["run_id"] == parent.run_id and parent.info["profile"] == "demo"
        stray = client.create_run(
            parent.experiment_id, tags={parent_run.PARENT_TAG: parent.run_id}
        ).info.run_id
    assert client.get_run(parent.run_id).info.status == "FINISHED"
    assert client.get_run(stray).info.status == "KILLED"  # no child left RUNNING

    with pytest.raises(ValueError), _start(uri) as parent:
        raise ValueError("boom")
    assert client.get_run(parent.run_id).info.status == "FAILED"

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(parent_run.Interrupted), _start(uri) as parent:
        os.kill(os.getpid(), signal.SIGTERM)
    assert client.get_run(parent.run_id).info.status == "KILLED"
    assert signal.getsignal(signal.SIGTERM) == previous  # handler restored

    with parent_run.ParentRun.reopen(parent.info) as again:
        assert client.get_run(parent.run_id).info.status == "RUNNING"
        assert again.finish({"a": "TERMINATED", "b": "PENDING"}) == "KILLED"  # interrupted
    assert client.get_run(parent.run_id).info.status == "KILLED"
    with parent_run.ParentRun.reopen(parent.info) as again:
        assert again.finish({"a": "ERROR", "b": "ERROR"}) == "FAILED"
        assert again.finish({"a": "TERMINATED", "b": "ERROR"}) == "FINISHED"
        assert again.trial_meta(_study()) == {
            "study": "loss-weights",
            "tracking_uri": uri,
            "experiment_id": parent.experiment_id,
            "parent_run_id": parent.run_id,
            "varied": ["per_w", "tpl_w", "adv_w"],
            "repeats": 3,
        }
    assert client.get_run(parent.run_id).info.status == "FINISHED"


def test_constants_are_defined_once_in_ttsr_tracking():
    assert parent_run.PARENT_TAG is tracking.PARENT_RUN_TAG
    # the key a Tune trial reports its run id under is Tune's, not the library's
    assert parent_run.MLFLOW_RUN_KEY is storage.MLFLOW_RUN_KEY
    assert not hasattr(tracking, "MLFLOW_RUN_KEY")
    tune_dir = Path(__file__).parent.parent / "tune"
    defined = {'"mlflow_run_id"': ["storage.py"]}
    for literal in ('"mlflow.parentRunId"', '"mlflow_run_id"', "6000", "get_experiment_by_name"):
        users = sorted(p.name for p in tune_dir.rglob("*.py") if literal in p.read_text())
        assert users == defined.get(literal, []), (literal, users)
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    assert len(tracking.param_text("x" * 7000)) == MAX_PARAM_VAL_LENGTH
