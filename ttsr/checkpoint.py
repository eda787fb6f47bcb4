"""Checkpoints: the reference's plain state dicts and our own self-describing format.

Reference layout (what researchmm/TTSR saves, e.g. the released TTSR.pt): a plain state dict with
`MainNet.*` and `LTE.*` keys (316 at the default size), sometimes with `module.` prefixes from
DataParallel or with the frozen `LTE_copy.*`. It does not record the architecture, so
`infer_model_config` reads it back from the keys and shapes.

Our format ("ttsr-tune/1"): {"format": "ttsr-tune/1", "model_config": {...}, "model": <reference
layout state dict>, **extra} — the same weights plus the config and whatever the trainer adds
(optimizer state, epoch, ...).

Everything is read with `torch.load(weights_only=True)`: tensors and plain containers only, never
arbitrary pickled objects.
"""

from __future__ import annotations

import random
import re
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ttsr.atomic import (
    open_for_writing,
    resolve_swapped_dir,
    write_dir_atomically,
    write_file_atomically,
)
from ttsr.errors import UsageError, first_line
from ttsr.model import RANDOM_VGG, TTSR, ModelConfig

FORMAT = "ttsr-tune/1"
_RESERVED = ("format", "model_config", "model")
_HEAD = "MainNet.SFE.conv_head.weight"
# Residual-block lists, in ModelConfig.num_res_blocks order (SFE, ×1, ×2, ×4).
_BLOCK_LISTS = ("MainNet.SFE.RBs", "MainNet.RB11", "MainNet.RB21", "MainNet.RB31")


class CheckpointError(UsageError, ValueError):
    """A checkpoint cannot be used; the one-line message names the file or the key."""


def _strip(state: dict[str, Any]) -> dict[str, Tensor]:
    """Drop `module.` prefixes (DataParallel, possibly nested) and the frozen `LTE_copy`."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"state dict key {key!r} is not a string")
        while key.startswith("module."):
            key = key[len("module.") :]
        if key.startswith("LTE_copy."):
            continue
        out[key] = value
    return out


def _few(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def infer_model_config(state_dict: dict[str, Tensor]) -> ModelConfig:
    """The ModelConfig of a reference-layout state dict (prefixes allowed).

    n_feats from `MainNet.SFE.conv_head.weight` (n, 3, 3, 3); block counts from the highest index
    under each block list; res_scale is not stored in the weights, so it is 1.0 (the default).
    """
    state = _strip(state_dict)
    head = state.get(_HEAD)
    if not isinstance(head, Tensor) or head.dim() != 4:
        raise CheckpointError(
            f"not a TTSR state dict: no {_HEAD} (first keys: {_few(sorted(state))})"
        )
    blocks = []
    for prefix in _BLOCK_LISTS:
        pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
        indices = [int(m.group(1)) for k in state if (m := pattern.match(k))]
        blocks.append(max(indices) + 1 if indices else 0)
    try:
        return ModelConfig(n_feats=int(head.shape[0]), num_res_blocks=tuple(blocks))
    except ValueError as exc:
        raise CheckpointError(f"not a usable TTSR state dict: {exc}") from None


def load_state_dict_any(obj: Any) -> tuple[dict[str, Tensor], ModelConfig]:
    """Normalise a loaded checkpoint object to (reference-layout state dict, ModelConfig).

    Accepts our format (uses its recorded model_config) or a reference-layout state dict (config
    inferred from the keys), with or without `module.` prefixes and `LTE_copy.*`.
    """
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"expected a state dict or a {FORMAT} checkpoint, got {type(obj).__name__}"
        )
    if "format" in obj:
        if obj["format"] != FORMAT:
            raise CheckpointError(
                f"unknown checkpoint format {obj['format']!r} (expected {FORMAT!r})"
            )
        if not isinstance(obj.get("model"), dict) or not isinstance(obj.get("model_config"), dict):
            raise CheckpointError(f"{FORMAT} checkpoint lacks 'model' or 'model_config'")
        state = _strip(obj["model"])
        raw = dict(obj["model_config"])
        try:
            raw["num_res_blocks"] = tuple(raw["num_res_blocks"])
            config = ModelConfig(**raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"bad model_config in checkpoint: {exc}") from None
        return state, config
    state = _strip(obj)
    return state, infer_model_config(state)


def save_checkpoint(
    path: str | Path,
    *,
    model_state: dict[str, Tensor],
    model_config: ModelConfig,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write our format atomically: a temporary file in the same directory, fsync, rename.

    A crash mid-write leaves the previous checkpoint intact, never a truncated one. `model_state`
    may be `model.state_dict()` (LTE_copy is dropped) or `model.reference_state_dict()`.
    """
    path = Path(path)
    extra = dict(extra or {})
    clash = [k for k in _RESERVED if k in extra]
    if clash:
        raise ValueError(f"extra may not contain the reserved keys {clash}")
    payload = {
        "format": FORMAT,
        "model_config": {
            **asdict(model_config),
            "num_res_blocks": list(model_config.num_res_blocks),
        },
        "model": _strip(model_state),
        **extra,
    }
    return write_file_atomically(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file (either format) to CPU, tensors and plain containers only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure means "not a usable torch file"
        reason = first_line(exc, 200)
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({reason})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(obj).__name__}")
    return obj


def _read_any(path: str | Path) -> tuple[Path, dict[str, Tensor], ModelConfig]:
    """`load_state_dict_any` of a checkpoint file or training checkpoint dir; errors name it."""
    path = Path(path)
    if path.is_dir():
        path = resolve_checkpoint_dir(path) / MODEL_FILE
    try:
        return path, *load_state_dict_any(load_checkpoint(path))
    except CheckpointError as exc:
        msg = str(exc)
        raise CheckpointError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None


def load_weights(model: TTSR, path: str | Path) -> TTSR:
    """Load a checkpoint of either format (or a training checkpoint dir) into ``model``.

    The architecture must match exactly: every key present with the model's shape, nothing
    extra; otherwise a one-line `CheckpointError` names the file and the first mismatches.
    """
    path, state, _ = _read_any(path)
    expected = model.reference_state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys: {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys: {_few(unexpected)}")
        raise CheckpointError(f"{path}: not a TTSR state dict ({'; '.join(parts)})")
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{path}: {key} is a {type(value).__name__}, not a tensor")
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{path}: shape mismatch for {key}: checkpoint {tuple(value.shape)}, "
                f"model {tuple(expected[key].shape)}"
            )
    with torch.no_grad():
        model.load_state_dict(state, strict=False)  # strict except LTE_copy, checked above
        # Keep the frozen copy equal to the LTE, as the reference's first texture_features would.
        model.LTE_copy.load_state_dict(model.LTE.state_dict())
    return model


def checkpoint_model_config(path: str | Path) -> ModelConfig:
    """The architecture a checkpoint file (or training checkpoint dir) holds."""
    return _read_any(path)[2]


def load_model(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    search_chunk: int | None = None,
    search_dtype: torch.dtype | None = None,
) -> TTSR:
    """Build a TTSR from a checkpoint of either format, in eval mode on `device`.

    The LTE weights come from the checkpoint, so no VGG19 lookup happens (`pretrained_vgg` is
    False: it describes the initialisation, which a loaded model does not have).
    """
    config = checkpoint_model_config(path)
    model = TTSR(config, vgg=RANDOM_VGG, search_chunk=search_chunk, search_dtype=search_dtype)
    return load_weights(model, path).to(device).eval()


# --- training checkpoint directories: state.pt (everything to resume) + model.pt --------------

STATE_FILE = "state.pt"
MODEL_FILE = "model.pt"


def write_training_checkpoint(
    directory: str | Path,
    *,
    state: dict[str, Any],
    model: TTSR,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``state`` (state.pt) and the model in our format (model.pt) as one atomic swap."""

    def write(tmp: Path) -> None:
        with open_for_writing(tmp / STATE_FILE) as f:  # a full disk raises OSError(ENOSPC)
            torch.save(state, f)
        save_checkpoint(
            tmp / MODEL_FILE,
            model_state=model.reference_state_dict(),
            model_config=model.config,
            extra=extra,
        )

    return write_dir_atomically(directory, write)


def copy_checkpoint_dir(source: Path, target: Path) -> Path:
    """Atomically replace ``target`` with a copy of the checkpoint directory ``source``."""
    return write_dir_atomically(
        target, lambda d: [shutil.copy2(f, d / f.name) for f in source.iterdir()]
    )


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """A checkpoint directory (or its state.pt) -> the directory that holds a complete state."""
    path = Path(path)
    if path.name == STATE_FILE:
        path = path.parent
    found = resolve_swapped_dir(path, STATE_FILE)
    if found is None:
        raise FileNotFoundError(f"resume: no {STATE_FILE} in {path}")
    return found


def load_state(path: str | Path) -> dict[str, Any]:
    """The training state of a checkpoint directory (tensors and primitives only)."""
    directory = resolve_checkpoint_dir(path)
    return torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)


# --- RNG state as tensors and primitives (torch.load(weights_only=True) can read it) ---------


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
