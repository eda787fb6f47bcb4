"""Training TTSR: `train(config, callbacks=...)`; `python -m ttsr.train` is the CLI.

- `ttsr.train.loop`: the epoch loop (`train`).
- `ttsr.train.setup`: building a run (trainer, data, validation, checkpoints, resume).
- `ttsr.train.state`: the one training-state object a checkpoint saves and resume restores.
- `ttsr.train.batches`: which images each step sees, a function of (seed, step).
- `ttsr.train.callbacks`: `Callback`, `RunInfo`, `TrainResult`.
- `ttsr.train.cli`: the command line (imports torch only once the flags are valid).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "train": "ttsr.train.loop",
    "Callback": "ttsr.train.callbacks",
    "RunInfo": "ttsr.train.callbacks",
    "TrainResult": "ttsr.train.callbacks",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # PEP 562: `python -m ttsr.train --bad-flag` stays fast
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ttsr.train' has no attribute {name!r}")
