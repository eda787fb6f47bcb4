"""MLflow logging for one training run — the same class for standalone runs and Tune trials.

Everything goes through an explicit ``mlflow.MlflowClient(tracking_uri)`` and a run id, never
MLflow's fluent active run: Tune trials run in worker processes and threads where that global
state is not ours. Every experiment made or reused here is tagged as a model-training one
(``mlflow.experimentKind``), so MLflow's UI opens it on its runs table.

Lifecycle: ``with MlflowTracker(...):`` (``run_id`` re-opens a run) ends the run FINISHED,
FAILED on an exception, KILLED on KeyboardInterrupt or SIGTERM (raised as `Terminated` in the
main thread); an ``atexit`` hook ends a run still open at exit (only SIGKILL leaves one RUNNING).

Outages: MLflow's client retries every request itself (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` and
friends; by default about 4 minutes a request), blocking, so metrics stay in order. A logging
call that still fails (`is_unavailable`) is kept and sent, in order, before the next one; ``end``
sends what is left. A server still unreachable at ``end`` leaves the run RUNNING and ``complete``
False (`python -m ttsr.train` then exits 69; a study's driver closes its trials' runs).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ttsr.names import DEFAULT_TRACKING_URI

DEFAULT_EXPERIMENT = "ttsr"
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag (the UI groups children by it)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # what the MLflow UI opens an experiment on
TRAINING_KIND = "custom_model_development"  # its runs table and charts (not the GenAI pages)
CONFIG_ARTIFACT = "config.json"  # a training run's whole TrainConfig
GIT_DIFF_ARTIFACT = "git_diff.patch"  # the uncommitted changes the code ran with, if any
# MLflow's own tags: the UI's Source field shows the name, with the commit beside it (the commit
# alone leaves the field empty)
SOURCE_TAGS = {"mlflow.source.name": "ttsr.train", "mlflow.source.type": "LOCAL"}
GIT_COMMIT_TAG = "mlflow.source.git.commit"
RERUN_OF_TAG = "rerun_of"  # a `--from-run` run: the run it trains again
IMAGE_ROWS = 4  # sample-grid rows kept in the step-indexed images
IMAGE_KEYS = {"train": "samples_train", "test": "samples_test"}  # grid split -> image key


class TrackingUnavailable(ConnectionError):
    """The tracking server does not answer (checked before a run starts)."""


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the tracking server could not be reached (refused, timed out, 5xx
    after the client's retries), as opposed to a request it rejected."""
    if isinstance(exc, TrackingUnavailable):
        return True
    requests = sys.modules.get("requests")
    if requests is not None and isinstance(
        exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout
    ):
        return True
    errors = sys.modules.get("mlflow.exceptions")
    if errors is None or not isinstance(exc, errors.MlflowException):
        return False
    text = str(exc)
    return text.startswith("API request to") and (
        "failed with exception" in text or "failed with timeout exception" in text
    )


def check_server(uri: str, *, timeout: float = 5.0) -> None:
    """An http(s) tracking URI must answer ``/health`` now: a typo or a server that is down
    fails in seconds instead of after the client's retry budget. Other URIs pass."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError as e:
        if e.code < 500:
            return  # it answers: a server without /health (older MLflow, a proxy)
        reason = f"HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        reason = str(getattr(e, "reason", e))
    raise TrackingUnavailable(f"{uri}: no answer from {url} ({reason})")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interrupt so that runs stopped by a scheduler end as KILLED."""


def ui_url(
    base_url: str, experiment_id: str, run_id: str | None = None, *, view: str | None = None
) -> str:
    """The MLflow UI page (at ``base_url``) of an experiment's training runs, or of one run's
    charts and images; ``view``: the share key of a saved runs-table view. The link carries
    ``workflowType=machine_learning``: MLflow 3.17's UI picks an experiment's page from its
    GenAI / Model-training switch (per browser, GenAI by default), not from its tags."""
    page = f"runs/{run_id}/model-metrics" if run_id else "runs"
    url = f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/{page}"
    return url + "?workflowType=machine_learning" + (f"&viewStateShareKey={view}" if view else "")


def _git(args: list[str], cwd: str | Path | None, timeout: float) -> str | None:
    """``git ARGS``'s output in ``cwd`` (default: this package's directory); None when git is
    missing, fails (not a repository) or takes longer than ``timeout`` seconds."""
    cwd = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The current git commit of ``cwd`` (default: this package's directory), or None."""
    return (_git(["rev-parse", "HEAD"], cwd, timeout=5) or "").strip() or None


def git_diff(cwd: str | Path | None = None) -> str:
    """``git diff HEAD`` of ``cwd`` (default: this package's directory): the uncommitted
    changes to tracked files; "" for a clean tree or no git."""
    return _git(["diff", "HEAD"], cwd, timeout=10) or ""


@contextlib.contextmanager
def no_download_progress() -> Iterator[None]:
    """MLflow draws a progress bar on stderr per artifact download; a command that prints
    its own lines (a report, a one-line error) has no use for it."""
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR as flag

    before = os.environ.get(flag.name)
    os.environ[flag.name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(flag.name, None)
        else:
            os.environ[flag.name] = before


def run_config(tracking_uri: str, ref: str) -> tuple[Any, dict[str, Any]]:
    """(the MLflow run, its ``config.json`` values) of a tracked training or trial run, for
    ``python -m ttsr.train --from-run``; ``ref`` is ``runs:/RUN_ID`` or the bare id. Anything
    else is a ConfigError naming ``ref``."""
    import tempfile

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from ttsr.config import ConfigError

    run_id = ref.removeprefix("runs:/").strip("/").split("/")[0]
    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"--from-run {ref}: no run {run_id!r} at {tracking_uri}") from None
    with tempfile.TemporaryDirectory() as tmp, no_download_progress():
        try:
            path = Path(client.download_artifacts(run_id, CONFIG_ARTIFACT, tmp))
            values = json.loads(path.read_text(encoding="utf-8"))
        except (MlflowException, OSError, ValueError):
            raise ConfigError(
                f"--from-run {ref}: run {run.info.run_name!r} has no {CONFIG_ARTIFACT} artifact, "
                "so it is not a training or trial run (a study's parent run?)"
            ) from None
    if not isinstance(values, dict):
        raise ConfigError(f"--from-run {ref}: its {CONFIG_ARTIFACT} is not a mapping of fields")
    return run, values


def param_text(value: Any) -> str:
    """``value`` as an MLflow param value: text, cut to MLflow's length limit."""
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH as limit

    text = ",".join(str(v) for v in value) if isinstance(value, tuple | list) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def flatten_params(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts -> {"a.b": "value"} with MLflow-safe string values."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_params(value, prefix=f"{name}."))
        else:
            out[name] = param_text(value)
    return out


def beside_database(tracking_uri: str) -> str | None:
    """``<db dir>/mlruns`` (a file URI) for a ``sqlite:///`` store; None (MLflow's default)
    for anything else."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or tracking_uri.endswith(":memory:"):
        return None
    db = Path(tracking_uri.removeprefix(prefix).split("?", 1)[0]).resolve()
    return (db.parent / "mlruns").as_uri()


def get_or_create_experiment(
    client: Any, name: str, *, artifact_location: str | None = None
) -> str:
    """The id of experiment ``name`` (restored if it was deleted), created when missing; tagged
    as a training experiment unless it already says what kind it is. A new experiment in a
    ``sqlite:///`` store keeps its artifacts beside the database (``<db dir>/mlruns``), not in
    ``./mlruns`` of whatever directory the command ran in."""
    found = client.get_experiment_by_name(name)
    if found is None and artifact_location is None:
        artifact_location = beside_database(client.tracking_uri)
    if found is None:
        try:
            return client.create_experiment(
                name,
                artifact_location=artifact_location,
                tags={EXPERIMENT_KIND_TAG: TRAINING_KIND},
            )
        except Exception:  # noqa: BLE001 - another process may have created it meanwhile
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    if EXPERIMENT_KIND_TAG not in found.tags:
        client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
    return found.experiment_id


class MlflowTracker:
    """One MLflow run, addressed by id through an explicit client."""

    def __init__(
        self,
        *,
        tracking_uri: str | None = None,
        experiment: str = DEFAULT_EXPERIMENT,
        run_name: str | None = None,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        artifact_location: str | None = None,
    ) -> None:
        import mlflow  # imported here: ttsr works without a tracker and mlflow is slow to import

        self.tracking_uri = tracking_uri or DEFAULT_TRACKING_URI
        self.client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
        run_tags = dict(tags or {})
        if parent_run_id:
            run_tags[PARENT_RUN_TAG] = parent_run_id
        if run_id is not None:
            run = self.client.get_run(run_id)  # raises if the id is unknown to this store
            self.client.update_run(run_id, status="RUNNING")
            for key, value in run_tags.items():
                self.client.set_tag(run_id, key, value)
            self.resumed = True
        else:
            experiment_id = get_or_create_experiment(
                self.client, experiment, artifact_location=artifact_location
            )
            run = self.client.create_run(experiment_id, run_name=run_name, tags=run_tags)
            self.resumed = False
        self.run_id: str = run.info.run_id
        self.experiment_id: str = run.info.experiment_id
        self.ended = False
        self.monitor: Any = None  # a ttsr.tracking.system_metrics.SystemMetricsMonitor once started
        self._before_end: list[Callable[[str], None]] = []
        self.complete = True  # False once the run could not be ended on the server
        self.unsent: list[Callable[[], Any]] = []  # calls kept through an outage, in order
        self._down_since: float | None = None
        self._previous_sigterm: Any = None
        atexit.register(self._end_at_exit)

    # --- logging ------------------------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        """Log (flattened) params; on a resumed run, params already logged are skipped, and one
        whose value changed (MLflow params are immutable) becomes a tag ``param_changed.<name>``."""
        from mlflow.entities import Param, RunTag

        flat = flatten_params(params)
        logged = self.client.get_run(self.run_id).data.params
        new = [Param(k, v) for k, v in flat.items() if k not in logged]
        changed = [
            RunTag(f"param_changed.{k}", v)
            for k, v in flat.items()
            if k in logged and logged[k] != v
        ]
        if new or changed:  # MlflowClient.log_batch splits a batch by MLflow's limits
            self._send(self.client.log_batch, params=new, tags=changed)

    def log_metrics(self, metrics: dict[str, Any], *, step: int) -> None:
        """Numeric entries become metrics at ``step``; strings become tags."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)  # fixed here: a batch sent twice is stored once
        numeric = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        texts = [RunTag(k, v) for k, v in metrics.items() if isinstance(v, str)]
        if numeric or texts:
            self._send(self.client.log_batch, metrics=numeric, tags=texts)

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self._send(self.client.log_batch, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._send(self._log_artifact, local_path=str(path), artifact_path=artifact_path)

    def _log_artifact(self, run_id: str, local_path: str, artifact_path: str | None) -> None:
        if Path(local_path).exists():  # gone (a trial's scratch) before it was sent: dropped
            self.client.log_artifact(run_id, local_path, artifact_path)

    def log_image(self, path: str | Path, *, key: str, step: int) -> None:
        """A sample grid PNG as the step-``step`` image of ``key`` (the run page's image
        slider steps through them): its first `IMAGE_ROWS` rows, upscaled and labelled for the
        eye (`ttsr.grids.display_grid`)."""
        from PIL import Image

        from ttsr.grids import display_grid

        with Image.open(path) as image:
            grid = display_grid(image, IMAGE_ROWS)
        self._send(self.client.log_image, image=grid, key=key, step=step, synchronous=True)

    def log_inputs(self, datasets: list[Any]) -> None:
        """`mlflow.entities.DatasetInput`s. Parallel trials log the same datasets into one
        experiment and a SQL store can collide on its unique key (it checks, then inserts):
        a second try finds the row the other trial wrote."""
        self._send(self._log_inputs, datasets=datasets)

    def _log_inputs(self, run_id: str, datasets: list[Any]) -> None:
        from mlflow.exceptions import MlflowException

        for attempt in range(1, 4):
            try:
                self.client.log_inputs(run_id, datasets=datasets)
                return
            except MlflowException as exc:
                if attempt == 3 or is_unavailable(exc):
                    raise
                time.sleep(0.2 * attempt)  # a backoff between retries, not a wait for a state

    def start_system_metrics(self, *, interval: float | None = None, gpu: bool = False) -> Any:
        """Sample ``system/...`` metrics in a background thread until the run ends; ``gpu``:
        also this process's own GPUs (see `ttsr.tracking.system_metrics`). Returns the monitor."""
        import mlflow

        from ttsr.tracking import system_metrics as sm

        if self.monitor is not None:
            return self.monitor
        reader, gpus, why = None, [], "none readable (NVML could not start)"
        if gpu:
            try:
                reader = sm.gpu_reader()
                gpus = sm.this_process_gpus(reader) if reader is not None else []
            except Exception as exc:  # noqa: BLE001 - GPU numbers are not worth a failed run
                reader, why = None, f"none readable ({type(exc).__name__}: {exc})"[:500]
            watched = ", ".join(
                f"cuda:{g.cuda_index}=nvml:{g.nvml_index} (GPU-{g.uuid})" for g in gpus
            )
            self.set_tags({"system_metrics.gpus": watched or why})
        first = 0
        if self.resumed:  # continue the sample steps of the earlier attempt
            history = self.client.get_metric_history(self.run_id, sm.CPU)
            first = max((m.step for m in history), default=-1) + 1
        client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)  # the thread's own
        run_id = self.run_id

        def log(metrics: dict[str, float], step: int) -> None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

        self.monitor = sm.SystemMetricsMonitor(
            log,
            interval=interval or sm.default_interval(),
            gpus=gpus,
            reader=reader,
            first_step=first,
        ).start()
        return self.monitor

    def before_end(self, fn: Callable[[str], None]) -> None:
        """Call ``fn(status)`` when the run ends (by `end`, not at interpreter exit); what it
        raises is reported and does not stop the run from ending."""
        self._before_end.append(fn)

    # --- outages ------------------------------------------------------------------------------
    def _send(self, call: Callable[..., Any], **what: Any) -> None:
        self.unsent.append(functools.partial(call, self.run_id, **what))
        self.flush()

    def flush(self) -> bool:
        """Send what is kept, oldest first; True when nothing is left. A server that cannot be
        reached keeps the rest for the next call (one line says so); any other error raises."""
        while self.unsent:
            try:
                self.unsent[0]()
            except Exception as exc:  # noqa: BLE001 - only an outage is kept, the rest raises
                if not is_unavailable(exc):
                    raise
                self._outage(exc)
                return False
            self.unsent.pop(0)
        if self._down_since is not None:
            print(
                f"MLflow {self.tracking_uri} answers again after "
                f"{time.monotonic() - self._down_since:.0f} s; everything kept was sent",
                file=sys.stderr,
            )
            self._down_since = None
        return True

    def _outage(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            from ttsr.cli_errors import short_reason

            print(
                f"MLflow {self.tracking_uri} unreachable ({short_reason(exc)}); run "
                f"{self.run_id} keeps what it logs and sends it when the server is back",
                file=sys.stderr,
            )

    # --- lifecycle ----------------------------------------------------------------------------
    def end(self, status: str = "FINISHED") -> None:
        """Stop the system-metrics thread (its last sample), run the `before_end` hooks, send
        what is kept, then end the run with FINISHED, FAILED or KILLED; later calls do nothing.
        A server still unreachable (after the client's retries) leaves the run RUNNING there
        and ``complete`` False, with one line on stderr; it does not raise."""
        if self.ended:
            return
        self.ended = True
        atexit.unregister(self._end_at_exit)  # a process that runs many trials keeps none alive
        if self.monitor is not None:
            self.monitor.stop()
        for fn in self._before_end:
            try:
                fn(status)
            except Exception as exc:  # noqa: BLE001 - ending the run matters more
                print(
                    f"MLflow run {self.run_id}: {fn.__qualname__} failed at its end: {exc}",
                    file=sys.stderr,
                )
        try:
            if self.flush():
                self.client.set_terminated(self.run_id, status=status)
                return
        except Exception as exc:  # noqa: BLE001 - only an outage is tolerated here
            if not is_unavailable(exc):
                raise
        self.complete = False
        print(
            f"MLflow {self.tracking_uri} still unreachable: run {self.run_id} stays RUNNING "
            f"there, {len(self.unsent)} logging call(s) not sent",
            file=sys.stderr,
        )

    def _end_at_exit(self) -> None:
        # The interpreter is exiting with the run still open: the code that should have ended
        # it never got there. No hooks: they may need threads that are already gone.
        if not self.ended:
            self._before_end.clear()
            try:
                self.end("KILLED")
            except Exception:  # noqa: BLE001, S110 - nothing left to report to at exit
                pass

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        raise Terminated(f"signal {signum}")

    def __enter__(self) -> MlflowTracker:
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        if exc_type is None:
            self.end("FINISHED")
        else:
            self.end("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")


class MlflowCallback:
    """Logs a training run to an `MlflowTracker`'s run (a `ttsr.train.Callback`).

    At the start: params (the config values that differ from TrainConfig's defaults, or the keys
    ``params`` names: MLflow's image cards print a run's params above its image, and 60 of them
    left no room for it), the whole config as ``config.json`` (what ``--from-run`` trains
    again), uncommitted changes as ``git_diff.patch``, tags, the data as dataset inputs, and the
    system-metrics thread. Every epoch: its metrics and sample grids at step = epoch. At the end:
    the best checkpoint as the run's MLflow model, and the stop reason. A run that ends before
    ``on_train_end`` (Tune stopped it, or it failed) logs its best checkpoint so far as it ends;
    Tune may kill a stopped trial first, hence `mlflow_model.log_missing_models`.
    """

    def __init__(
        self,
        tracker: MlflowTracker,
        *,
        system_metrics_interval: float | None = None,
        log_model: bool = True,
        params: Sequence[str] | None = None,
    ) -> None:
        self.tracker = tracker
        self.params = None if params is None else list(params)  # config keys shown as params
        self.logged: set[int] = set()  # epochs the run holds
        self.system_metrics_interval = system_metrics_interval
        self.log_model = log_model
        self.best_dir: Path | None = None
        self.model_id: str | None = None  # the logged model, once logged

    def on_train_start(self, info: Any) -> None:
        from ttsr.tracking.dataset_inputs import dataset_inputs

        values = info.config.to_dict()
        if self.params is None:  # what this run sets: a short list the UI can show whole
            shown = info.config.model_dump(exclude_defaults=True, exclude={"out_dir"})
        else:
            shown = {k: values[k] for k in self.params}
        self.tracker.log_params(shown)
        # The whole resolved config, whatever the params show: what re-running the run needs.
        config_file = Path(info.out_dir) / CONFIG_ARTIFACT
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(json.dumps(values, indent=1, default=str) + "\n", encoding="utf-8")
        self.tracker.log_artifact(config_file)
        diff = git_diff()
        if diff:  # the commit tag alone would not say what ran
            diff_file = Path(info.out_dir) / GIT_DIFF_ARTIFACT
            diff_file.write_text(diff, encoding="utf-8")
            self.tracker.log_artifact(diff_file)
        # every run trains through ttsr.train's loop, a trial's too
        tags = {**info.tags, **SOURCE_TAGS}
        commit = git_commit()
        if commit:
            tags.update({"git_commit": commit, GIT_COMMIT_TAG: commit})
        self.tracker.set_tags(tags)
        self.tracker.log_inputs(dataset_inputs(info.config))
        self.tracker.start_system_metrics(
            interval=self.system_metrics_interval, gpu=info.tags.get("device", "cpu") != "cpu"
        )
        self.best_dir = Path(info.out_dir) / "checkpoints" / "best"
        if self.log_model:
            # A trial Tune stops is ended moments after its last report: have the imports done
            # by then, so that what logging the model takes at the end is mostly its upload.
            import mlflow.models  # noqa: F401
            import mlflow.pyfunc  # noqa: F401

            self.tracker.before_end(self._log_model_at_end)
        self._hold_every_epoch_once(info.history)

    def _hold_every_epoch_once(self, history: tuple[dict[str, Any], ...]) -> None:
        """A resumed run holds every epoch exactly once: an epoch logged but not checkpointed
        before a crash runs again (skip it); one checkpointed but whose log was lost is logged
        from the checkpoint's history."""
        if self.tracker.resumed:
            found = self.tracker.client.get_metric_history(self.tracker.run_id, "epoch")
            self.logged = {int(m.step) for m in found}
        for metrics in history:
            epoch = int(metrics["epoch"])
            if epoch not in self.logged:
                self.tracker.log_metrics(metrics, step=epoch)
                self.logged.add(epoch)

    def on_epoch_end(
        self, metrics: dict[str, Any], checkpoint_dir: Path, images: dict[str, Path]
    ) -> None:
        step = int(metrics["epoch"])
        if step in self.logged:
            return
        self.tracker.log_metrics(metrics, step=step)
        self.logged.add(step)
        for split, path in images.items():
            self.tracker.log_image(path, key=IMAGE_KEYS.get(split, f"samples_{split}"), step=step)

    def on_train_end(self, result: Any) -> None:
        from ttsr import names

        if self.log_model and result.best_checkpoint is not None:
            self.best_dir = Path(result.best_checkpoint)
            self._log_model_at_end("FINISHED")
        self.tracker.set_tags(
            {
                names.STOP_REASON: result.stop_reason,
                names.BEST_EPOCH: result.best_epoch,
                names.STOP_DETAIL: result.stop_detail,
                **({names.STOP_SIGNAL: result.stop_signal} if result.stop_signal else {}),
            }
        )

    def _log_model_at_end(self, status: str) -> None:
        """The best checkpoint as the run's model (once), unless the server is unreachable: then
        one line says so and the run goes on to end (its metrics and tags are kept for the
        server; a model is not, it is logged later from the checkpoint, e.g. by the driver)."""
        from ttsr.checkpoint import resolve_checkpoint_dir
        from ttsr.tracking.mlflow_model import log_checkpoint

        if self.model_id is not None or self.best_dir is None:
            return
        try:
            best = resolve_checkpoint_dir(self.best_dir)
        except FileNotFoundError:
            return  # no epoch improved (or none finished) before the run ended
        try:
            self.model_id = log_checkpoint(self.tracker.client, self.tracker.run_id, best)
        except Exception as exc:  # noqa: BLE001 - only an outage is tolerated here
            if not is_unavailable(exc):
                raise
            from ttsr.cli_errors import short_reason

            print(
                f"MLflow {self.tracker.tracking_uri} unreachable: the best model of run "
                f"{self.tracker.run_id} was not logged ({short_reason(exc)}); its checkpoint "
                f"is {self.best_dir}",
                file=sys.stderr,
            )
