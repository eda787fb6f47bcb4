"""The tests' one tiny training configuration: the real TTSR loop at 32 px with 8 features and
one residual block per stage, 3 training items (one step of 2 per epoch) and 1 validation
image: seconds an epoch on one core. Tests that need more (a study's trials, several validation
images) change keys of it, so what differs is what the test is about.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ttsr.config import TrainConfig

TINY: dict[str, Any] = {
    "size": 32,
    "batch_size": 2,
    "fraction": 0.03,
    "val_limit": 1,  # fraction subsets the training split only
    "n_feats": 8,
    "num_res_blocks": "1+1+1+1",
    "epochs": 1,
    "patience": None,
    "device": "cpu",
    "num_samples_grid": 2,
    "seed": 0,
}


def tiny_config(tmp_path: Path, **changes: Any) -> TrainConfig:
    """``TINY`` writing under ``tmp_path/run``, with ``changes``."""
    return TrainConfig.from_dict({**TINY, "out_dir": str(Path(tmp_path) / "run"), **changes})
