"""Training TTSR: `train(config, callbacks=...)`; `python -m ttsr.train` is the CLI
(`ttsr.train.cli`, which imports torch only once the flags are valid). The modules are listed in
docs/DESIGN.md."""

from __future__ import annotations

from typing import Any

from ttsr.train.callbacks import Callback, RunInfo, TrainResult

__all__ = ["Callback", "RunInfo", "TrainResult", "train"]


def __getattr__(name: str) -> Any:  # PEP 562: `python -m ttsr.train --bad-flag` stays fast
    if name == "train":
        from ttsr.train.loop import train

        return train
    raise AttributeError(f"module 'ttsr.train' has no attribute {name!r}")
