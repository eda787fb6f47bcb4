"""Data for TTSR: prepare images into Parquet shards, and open them as torch Datasets.

``python -m ttsr.data prepare|info|bench`` on the command line; `open_dataset` in code.
See docs/DATA.md for formats, commands and measured throughput.
"""

from ttsr.data.cufed import PairedDataset
from ttsr.data.dataset import ShardDataset
from ttsr.data.inpaint import InpaintOptions
from ttsr.data.prepare import PrepareResult, prepare
from ttsr.data.sample import sample_dataset_dir
from ttsr.data.source import REF_MODES, inpaint_options, open_dataset, open_dataset_from_config
from ttsr.errors import DataError

__all__ = [
    "REF_MODES",
    "DataError",
    "InpaintOptions",
    "PairedDataset",
    "PrepareResult",
    "ShardDataset",
    "inpaint_options",
    "open_dataset",
    "open_dataset_from_config",
    "prepare",
    "sample_dataset_dir",
]
