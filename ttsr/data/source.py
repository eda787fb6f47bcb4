"""`open_dataset`: the one entry point from "what the config says" to a torch Dataset."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torch.utils.data import Dataset

from ttsr.config import REF_MODES
from ttsr.data.cufed import PairedDataset, is_paired_dir
from ttsr.data.dataset import ShardDataset
from ttsr.data.inpaint import InpaintOptions
from ttsr.data.manifest import MANIFEST_NAME
from ttsr.data.sample import sample_dataset_dir
from ttsr.errors import DataError

if TYPE_CHECKING:
    from ttsr.config import TrainConfig


def open_dataset(
    data: str | Path | None,
    *,
    size: int,
    split: str,
    ref_mode: str = "gt",
    fraction: float = 1.0,
    inpaint: InpaintOptions | None = None,
    seed: int = 0,
    augment: bool | None = None,
    data_seed: int | None = None,
) -> Dataset:
    """A Dataset of item dicts (see `ttsr.data.items`) for ``split`` ("train" or "test").

    ``data``: None -> the built-in sample set; a prepared folder (has manifest.json) -> shards;
    a paired folder (CUFED layout) -> pairs, which needs ``ref_mode='paired'``.
    ``augment``: None -> on for the training split only. ``seed`` drives augmentation;
    ``data_seed`` (default: ``seed``) the fraction subset and the 'other' pairing, so runs
    repeated over seeds see the same images (the split itself was fixed by ``prepare``).
    """
    if size <= 0 or size % 4:
        raise DataError(f"size: must be a positive multiple of 4 (got {size})")
    if ref_mode not in REF_MODES:
        raise DataError(f"ref_mode: must be one of {', '.join(REF_MODES)} (got {ref_mode!r})")
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"fraction: must be in (0, 1] (got {fraction})")
    common = dict(
        size=size,
        split=split,
        fraction=fraction,
        inpaint=inpaint,
        seed=seed,
        augment=augment,
        data_seed=data_seed,
    )
    if data is None:
        if ref_mode == "paired":
            raise DataError("ref_mode: 'paired' needs data= a paired folder (train/input, ...)")
        return ShardDataset(sample_dataset_dir(size), ref_mode=ref_mode, **common)
    root = Path(data).expanduser()
    if not root.exists():
        raise DataError(f"data: {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data: {root} is not a folder")
    if (root / MANIFEST_NAME).is_file():
        return ShardDataset(root, ref_mode=ref_mode, **common)
    if is_paired_dir(root):
        if ref_mode != "paired":
            raise DataError(
                f"ref_mode: {root} is a paired folder (train/input + train/ref or "
                f"test/CUFED5); use ref_mode 'paired', not {ref_mode!r}"
            )
        return PairedDataset(root, **common)
    if not any(root.iterdir()):
        raise DataError(f"data: {root} is empty")
    raise DataError(
        f"data: {root} is neither a prepared folder (no {MANIFEST_NAME}) nor a paired folder "
        f"(train/input + train/ref, or test/CUFED5); prepare it with "
        f"`python -m ttsr.data prepare --src {root} --out DIR`"
    )


def inpaint_options(config: TrainConfig) -> InpaintOptions | None:
    if not config.inpaint:
        return None
    return InpaintOptions(
        box=tuple(config.inpaint_box), blur=config.inpaint_blur, random=config.inpaint_random
    )


def open_dataset_from_config(config: TrainConfig, split: str) -> Dataset:
    """`open_dataset` with the data fields of a `TrainConfig` (augmentation: train only, and
    only when ``config.augment``).

    ``fraction`` subsets the training split only: every run validates on the same test images
    whatever share of the training data it uses, so a dataset-fraction study compares like
    with like."""
    return open_dataset(
        config.data,
        size=config.size,
        split=split,
        ref_mode=config.ref_mode,
        fraction=config.fraction if split == "train" else 1.0,
        inpaint=inpaint_options(config),
        seed=config.seed,
        augment=config.augment and split == "train",
        data_seed=config.data_seed,
    )
