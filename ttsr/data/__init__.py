"""Data for TTSR: prepare images into Parquet shards, and open them as torch Datasets.

``python -m ttsr.data prepare|info|photos`` on the command line; `open_dataset` in code.
See docs/DATA.md for formats, commands and measured throughput.
"""

from ttsr.data.dataset import PairedDataset, ShardDataset
from ttsr.data.items import InpaintOptions
from ttsr.data.prepare import prepare
from ttsr.data.source import (
    inpaint_options,
    open_dataset,
    open_dataset_from_config,
    sample_dataset_dir,
)
from ttsr.errors import DataError

__all__ = [
    "DataError",
    "InpaintOptions",
    "PairedDataset",
    "ShardDataset",
    "inpaint_options",
    "open_dataset",
    "open_dataset_from_config",
    "prepare",
    "sample_dataset_dir",
]
