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

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ttsr.model import TTSR, ModelConfig

FORMAT = "ttsr-tune/1"
_RESERVED = ("format", "model_config", "model")
_HEAD = "MainNet.SFE.conv_head.weight"
# Residual-block lists, in ModelConfig.num_res_blocks order (SFE, ×1, ×2, ×4).
_BLOCK_LISTS = ("MainNet.SFE.RBs", "MainNet.RB11", "MainNet.RB21", "MainNet.RB31")


class CheckpointError(ValueError):
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
            "n_feats": model_config.n_feats,
            "num_res_blocks": list(model_config.num_res_blocks),
            "res_scale": model_config.res_scale,
        },
        "model": _strip(model_state),
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file (either format) to CPU, tensors and plain containers only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure means "not a usable torch file"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({reason[:200]})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(obj).__name__}")
    return obj


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
    path = Path(path)
    try:
        state, config = load_state_dict_any(load_checkpoint(path))
    except CheckpointError as exc:
        msg = str(exc)
        raise CheckpointError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    model = TTSR(config, load_vgg=False, search_chunk=search_chunk, search_dtype=search_dtype)
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
    model.load_state_dict(state, strict=False)  # strict except LTE_copy, checked above
    # Keep the frozen copy equal to the LTE, as the reference's first texture_features call would.
    model.LTE_copy.load_state_dict(model.LTE.state_dict())
    return model.to(device).eval()
