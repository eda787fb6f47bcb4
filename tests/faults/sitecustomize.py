"""Fault injection for tests, from outside the product: a test puts this folder first on
``PYTHONPATH`` of a study it runs, so every Python process of that study (driver, Ray workers)
imports this module at start-up (Python's ``sitecustomize`` hook).

``FAULT_FAIL_ONCE=<marker file>``: the first trial that reports epoch 1 creates the marker and
raises once (with the marker present nothing happens), as a trial's own Python error would, so
a test can check that the trial restarts from its checkpoint. Done by wrapping
``tune.execution.trainable.TuneReport.on_epoch_end`` as that module is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

MARKER_ENV = "FAULT_FAIL_ONCE"
TARGET = "tune.execution.trainable"


class InjectedFailure(RuntimeError):
    pass


def _claim(marker: str, trial_id: str) -> bool:
    """Create the marker atomically: True for the one process that created it."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(trial_id)
    return True


def _patch(module) -> None:
    marker = os.environ[MARKER_ENV]
    original = module.TuneReport.on_epoch_end

    def on_epoch_end(self, metrics, checkpoint_dir, images):
        original(self, metrics, checkpoint_dir, images)
        if metrics.get("epoch") == 1 and _claim(marker, self.trial_id):
            raise InjectedFailure(
                f"{MARKER_ENV}: injected failure after epoch 1 of {self.trial_id}"
            )

    module.TuneReport.on_epoch_end = on_epoch_end


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the real loader of `TARGET` to patch it once executed."""

    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get(MARKER_ENV):
    sys.meta_path.insert(0, _Finder())
