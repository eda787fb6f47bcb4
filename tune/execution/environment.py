"""The process settings a study run needs, applied by ``tune/run.py``'s ``main`` before Ray,
Tune or MLflow is imported (several read the environment once, at import or start); importing
a ``tune`` module changes nothing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Each is a default: a value already in the environment wins.
DEFAULTS = {
    # The classic console engine; with verbose=0 it prints nothing, and tune.execution.progress
    # prints a line per trial event instead of the periodic table.
    "RAY_AIR_NEW_OUTPUT": "0",
    # Repeated worker log lines folded.
    "RAY_DEDUP_LOGS": "1",
    # Write Tune's experiment state often, so a driver killed mid-study can be resumed.
    "TUNE_GLOBAL_CHECKPOINT_S": "5",
    # Tune warns when two forced state snapshots (one per num_to_keep checkpoints of a trial)
    # fall within this many seconds: short demo epochs do so all the time, yet a snapshot is a
    # few KB and what keeps --resume consistent, so no warning (0 turns it off).
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # No "Creating initial MLflow database tables" chatter.
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}
LOCAL_RAY_DEFAULTS = {
    # A Ray started here serves this machine only: without this, Ray resolves 127.0.0.1 to
    # the machine's outward address and its GCS, raylet and dashboard listen there.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # What a local ray.init() does anyway (token auth on, a token made in ~/.ray when missing),
    # said explicitly so that Ray does not warn about it on every start.
    "RAY_AUTH_MODE": "token",
}


def configure(*, local_ray: bool) -> None:
    """Environment for this driver and the trial workers of a local Ray, and quiet loggers."""
    # Trial workers of a local Ray inherit this environment: let them import ttsr and tune from
    # this checkout. (On a remote cluster the package must be installed on every node.)
    paths = [str(REPO), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    for key, value in {**DEFAULTS, **(LOCAL_RAY_DEFAULTS if local_ray else {})}.items():
        os.environ.setdefault(key, value)
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def quiet_optuna() -> None:
    """No "A new study created in memory" line: Optuna sets its logger to INFO when imported,
    so this runs after the import."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


class OneLineRecords(logging.Filter):
    """Ray's own log records as one line each: the message's first line, and for a record
    that carries an exception its last line (e.g. ``OSError: [Errno 28] No space left on
    device``) instead of the traceback. ``--debug`` / ``TTSR_DEBUG=1`` keeps them whole."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        lines = [line for line in text.splitlines() if line.strip()]
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            lines = lines[:1] + [f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1]}"]
        elif len(lines) > 1 and any(line.startswith("Traceback") for line in lines):
            lines = [lines[0], lines[-1]]
        record.msg, record.args = " | ".join(lines[:2]) if lines else text, None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def one_line_ray_logs() -> None:
    """No tracebacks from Ray's loggers in a study's output unless debugging (call once Ray
    is imported: its handler is set up then)."""
    from ttsr.cli_errors import debug_requested

    if debug_requested():
        return
    for handler in logging.getLogger("ray").handlers:
        if not any(isinstance(f, OneLineRecords) for f in handler.filters):
            handler.addFilter(OneLineRecords())
