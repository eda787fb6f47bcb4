"""What data a training run used, as MLflow dataset inputs (the runs table's Dataset column).

Two inputs per run, the training split (context ``train``) and the validation split (context
``validation``: the test split cut to ``val_limit``), each with a name (the data folder's, or
``sample``, and the split), a source (the folder), a profile (items, split, fraction, size,
reference mode, inpainting, seed, kind of folder) and a digest: a hash of the items the run uses
(the ``sha256`` the shard manifest records per image; for a paired folder, the file paths) and of
what turns them into inputs (size, reference mode, inpainting). Equal digests: the same images
made into the same inputs. The datasets are opened again here (a prepared folder's shards for
their hash column only), so the description is exactly what ``ttsr.train`` uses.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttsr.config import TrainConfig

CONTEXT_TAG = "mlflow.data.context"  # MLflow's tag for the role of a dataset input
CONTEXTS = {"train": "train", "test": "validation"}  # split -> context
DIGEST_LENGTH = 12  # hex characters (MLflow's own digests are 8-10; its store allows 36)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    digest: str
    source: str  # a local path
    context: str  # "train" or "validation"
    profile: dict[str, Any]


def describe(config: TrainConfig, split: str) -> DatasetInfo:
    """The data of ``split`` ("train" or "test") as ``config`` trains or validates on it."""
    from ttsr.data import open_dataset_from_config, sample_dataset_dir
    from ttsr.data.manifest import MANIFEST_NAME

    dataset = open_dataset_from_config(config, split)
    keys = list(dataset.keys)
    if split == "test" and config.val_limit is not None:
        keys = keys[: config.val_limit]  # what ttsr.train.evaluate validates on
    if config.data is None:
        root, base, kind = sample_dataset_dir(config.size), "sample", "sample set"
    else:
        root = Path(config.data).expanduser().resolve()
        base = root.name
        kind = "prepared" if (root / MANIFEST_NAME).is_file() else "paired"
    inpaint = (
        {
            "box": list(config.inpaint_box),
            "blur": config.inpaint_blur,
            "random": config.inpaint_random,
        }
        if config.inpaint
        else None
    )
    what = {"size": config.size, "ref_mode": config.ref_mode, "inpaint": inpaint, "items": keys}
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()
    profile = {
        "items": len(keys),
        "split": split,
        "fraction": config.fraction if split == "train" else 1.0,
        "size": config.size,
        "ref_mode": config.ref_mode,
        "inpaint": inpaint,
        "seed": config.seed,
        "kind": kind,
    }
    if split == "test" and config.val_limit is not None:
        profile["val_limit"] = config.val_limit
    return DatasetInfo(
        name=f"{base}-{split}",
        digest=digest[:DIGEST_LENGTH],
        source=str(root),
        context=CONTEXTS[split],
        profile=profile,
    )


def dataset_inputs(config: TrainConfig) -> list[Any]:
    """The training and validation splits as `mlflow.entities.DatasetInput`s."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    out = []
    for split in ("train", "test"):
        info = describe(config, split)
        dataset = Dataset(
            name=info.name,
            digest=info.digest,
            source_type="local",
            source=json.dumps({"uri": info.source}),
            profile=json.dumps(info.profile),
        )
        out.append(DatasetInput(dataset, tags=[InputTag(CONTEXT_TAG, info.context)]))
    return out
