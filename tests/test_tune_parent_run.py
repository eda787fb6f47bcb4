"""MLflow parent/child bookkeeping in a temp SQLite store (no Ray)."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from tune import parent_run


def test_parent_children_lookup_and_closing(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    exp, parent = parent_run.start_parent(
        uri, study="s", run_name="s-1", tags={"study": "s"}, params={"config.size": 32}
    )
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

    parent_run.end(uri, parent, parent_run.KILLED)
    parent_run.reopen(uri, parent)
    assert client.get_run(parent).info.status == "RUNNING"
    parent_run.end(uri, parent, parent_run.FINISHED)
    assert client.get_run(parent).info.status == "FINISHED"
