"""A study whose ``--storage`` is S3-compatible object storage (moto's server mode on
127.0.0.1, fake credentials, ``AWS_ENDPOINT_URL`` for pyarrow): the warm start's model, Tune's
experiment state, the trials' results and checkpoints all go there; the driver is SIGKILLed
mid-study, and ``--resume s3://...`` completes the same invocation (reusing the warm start from
the bucket), with one MLflow child run per trial and none RUNNING.
"""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from cluster import procs

from ttsr import names
from tune.execution import parent_run

from .conftest import (
    RUN,
    TINY,
    env,
    mlflow_runs,
    run,
    study_args,
    tiny_study,
    write_experiments,
)
from .servers import start_moto

pytestmark = pytest.mark.slow

BUCKET = "ttsr-results"
EPOCHS = 3


@pytest.fixture
def s3(tmp_path):
    pytest.importorskip("moto", reason="moto[server] (the test extra) is not installed")
    server = start_moto(tmp_path)
    import boto3

    boto3.client("s3", endpoint_url=server.endpoint, **_credentials()).create_bucket(Bucket=BUCKET)
    yield server
    assert not server.stop(), "moto server processes survived"


def _credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "us-east-1",
    }


def _fs(server):
    import pyarrow.fs

    return pyarrow.fs.S3FileSystem(
        endpoint_override=server.endpoint,
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
    )


def _files(server, prefix: str) -> list[str]:
    import pyarrow.fs

    selector = pyarrow.fs.FileSelector(f"{BUCKET}/{prefix}", recursive=True, allow_not_found=True)
    return sorted(i.path for i in _fs(server).get_file_info(selector) if i.is_file)


def _read(server, path: str) -> str:
    with _fs(server).open_input_stream(path) as f:
        return f.read().decode()


def test_study_on_s3_storage_resumes_after_the_driver_is_killed(
    tmp_path, s3, ray_temp_dir, figures
):
    study = tiny_study(
        config={**TINY, "epochs": EPOCHS},
        search={"lr": {"grid": [1e-4, 3e-4]}},
        pretrain={"epochs": 1, "patience": None},
    )
    experiments = write_experiments(tmp_path / "exp.yaml", {"s3study": study})
    args = study_args(tmp_path, ray_temp_dir, "s3study", experiments)
    storage = f"s3://{BUCKET}/results"
    args[args.index("--storage") + 1] = storage
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    driver_env = env(**s3.env())
    log = (tmp_path / "driver1.log").open("w")
    driver = subprocess.Popen(
        [*RUN, *args], cwd=tmp_path, env=driver_env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _kill_once_a_trial_reported(driver, uri, ray_temp_dir)
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
    first = (tmp_path / "driver1.log").read_text(errors="replace")
    assert "warm start: training" in first, first[-3000:]

    (state,) = {
        f.rsplit("/", 1)[0] for f in _files(s3, "results/s3study") if "/experiment_state" in f
    }
    experiment = f"s3://{state}"
    out = run([*RUN, *args, "--resume", experiment], cwd=tmp_path, timeout=600, **s3.env())
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "loading Tune's pickled experiment state" in out.stdout
    assert "warm start: reusing s3://" in out.stdout, out.stdout[-3000:]

    _, parents, children = mlflow_runs(uri, "s3study")
    assert [p.info.status for p in parents] == [parent_run.FINISHED]
    trials = [c for c in children if c.data.tags.get("role") == "trial"]
    trial_ids = sorted(c.data.tags["trial_id"] for c in trials)
    assert len(trial_ids) == len(set(trial_ids)) == 2, trial_ids
    assert all(c.info.status != parent_run.RUNNING for c in children)

    files = _files(s3, "results/s3study")
    results = [f for f in files if f.endswith("/result.json")]
    assert len(results) == 2, files
    for path in results:
        epochs = [json.loads(line)[names.EPOCH] for line in _read(s3, path).splitlines() if line]
        assert epochs == list(range(EPOCHS + 1)), (path, epochs)
    assert any("/checkpoint_" in f for f in files), "no trial checkpoint in the bucket"
    assert any(f.endswith("/model.pt") and "/pretrain-" in f for f in files)  # the warm start


def _kill_once_a_trial_reported(driver, uri: str, ray_temp_dir: str) -> None:
    """SIGKILL the driver once a trial (not the warm start) has logged epoch 1 to MLflow, then
    stop what its local Ray leaves behind."""
    from mlflow.tracking import MlflowClient

    def trial_reported() -> bool:
        assert driver.poll() is None, f"study ended (exit {driver.returncode}) before the kill"
        try:
            _, _, children = mlflow_runs(uri, "s3study")
        except Exception:  # noqa: BLE001 - the store is being created
            return False
        client = MlflowClient(uri)
        return any(
            c.data.tags.get("role") == "trial"
            and any(m.step >= 1 for m in client.get_metric_history(c.info.run_id, names.EPOCH))
            for c in children
        )

    procs.wait_until(trial_reported, timeout=400, what="a trial's epoch 1", every=0.5)
    started = procs.descendants(driver.pid)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    try:  # the local Ray sees its driver die and exits; what is left after 20 s is killed
        procs.wait_until(
            lambda: not any(procs.alive(p) for p in started),
            timeout=20,
            what="the killed driver's Ray processes exit",
        )
    except TimeoutError:
        pass
    leftovers = {p for p in started if procs.alive(p)} | procs.pids_naming(ray_temp_dir)
    procs.signal_pids(leftovers, signal.SIGKILL)
