"""The prepared folder's bookkeeping: params.json, per-chunk receipts, the merged manifest.json
(layout: docs/DATA.md, "Prepared folder").

A receipt is written after its chunk's shards, so "receipt present, same file list, shards
present" means the chunk is finished at that size; anything else is redone on the next run.
The split and the nested fraction order hash the image's content hash with a seed, so they do
not depend on file names, on which other files exist, on processing order or on the size.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from ttsr.atomic import write_bytes_atomically
from ttsr.data.shards import SHARD_FORMATS, shard_name
from ttsr.errors import DataError

MANIFEST_NAME = "manifest.json"
PARAMS_NAME = "params.json"
SPLITS = ("train", "test")
MANIFEST_VERSION = 1


def unit_hash(*parts: object) -> float:
    """A uniform number in [0, 1) from the given parts (stable across runs and platforms)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(content_hash: str, *, seed: int, test_fraction: float) -> str:
    """'test' for an expected ``test_fraction`` of images, decided per image.

    Per image (not "sort and cut") so that adding images, `--limit`, or preparing another size
    never moves an image from one split to the other.
    """
    return "test" if unit_hash("split", seed, content_hash) < test_fraction else "train"


def fraction_order(keys: list[str], *, seed: int) -> list[int]:
    """Indices of ``keys`` in a seeded pseudo-random order (ties broken by key)."""
    return sorted(range(len(keys)), key=lambda i: (unit_hash("fraction", seed, keys[i]), keys[i]))


def take_fraction(keys: list[str], fraction: float, *, seed: int) -> list[int]:
    """Indices of a deterministic subset: the first ceil(fraction * n) of `fraction_order`.

    Nested by construction (the 0.25 subset is a prefix of the 0.5 subset) and never empty for
    n >= 1. Returned sorted, so items keep their storage order (good for shard locality).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    n = len(keys)
    if n == 0:
        return []
    keep = max(1, math.ceil(fraction * n - 1e-9))
    return sorted(fraction_order(keys, seed=seed)[:keep])


def size_dir(out: Path, size: int) -> Path:
    return out / f"size={size}"


def receipt_path(out: Path, size: int, chunk: int) -> Path:
    return size_dir(out, size) / "_receipts" / f"chunk-{chunk:05d}.json"


def write_json_atomically(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None


def check_params(out: Path, params: dict[str, Any]) -> None:
    """Record the parameters of the first run; later runs must match (else the split shifts)."""
    path = out / PARAMS_NAME
    if not path.exists():
        write_json_atomically(path, params)
        return
    old = read_json(path)
    for key, value in params.items():
        if old.get(key) != value:
            raise DataError(
                f"{out} was prepared with {key}={old.get(key)!r}, not {value!r}; "
                "use the same value or a new --out"
            )


def chunk_done(out: Path, size: int, chunk: int, files: list[str]) -> bool:
    try:
        receipt = json.loads(receipt_path(out, size, chunk).read_text())
    except (FileNotFoundError, ValueError):
        return False
    shards = (size_dir(out, size) / shard_name(s, chunk) for s in SPLITS)
    return receipt.get("files") == files and all(p.exists() for p in shards)


def merge_receipts(out: Path, params: dict[str, Any], source: str) -> dict[str, Any]:
    """Fold every receipt into the manifest (items, skipped files, counts and bytes per size)."""
    items: dict[str, dict[str, Any]] = {}
    skipped: dict[str, dict[str, Any]] = {}
    sizes: dict[str, dict[str, int]] = {}
    for sdir in sorted(out.glob("size=*")):
        size = int(sdir.name.split("=", 1)[1])
        receipts = sorted((sdir / "_receipts").glob("chunk-*.json"))
        if not receipts:
            continue
        stats = {"train": 0, "test": 0, "bytes": 0, "shards": 0}
        seen: dict[str, str] = {}
        for rpath in receipts:
            receipt = read_json(rpath)
            stats["bytes"] += sum(receipt["shard_bytes"].values())
            stats["shards"] += len(receipt["shard_bytes"])
            for item in receipt["items"]:
                first = seen.setdefault(item["sha256"], item["path"])
                if first != item["path"]:  # readers drop it the same way (first path wins)
                    _skip(skipped, item["path"], f"duplicate of {first}", size)
                    continue
                stats[item["split"]] += 1
                entry = items.setdefault(item["path"], dict(item))
                entry["sizes"] = sorted({*entry.get("sizes", []), size})
            for skip in receipt["skipped"]:
                _skip(skipped, skip["path"], skip["reason"], size if skip.get("per_size") else None)
        sizes[str(size)] = stats
    manifest = {
        "version": MANIFEST_VERSION,
        "source": source,
        **params,
        "sizes": dict(sorted(sizes.items(), key=lambda kv: int(kv[0]))),
        "items": [items[p] for p in sorted(items)],
        "skipped": [skipped[p] for p in sorted(skipped)],
    }
    write_json_atomically(out / MANIFEST_NAME, manifest)
    return manifest


def _skip(skipped: dict[str, dict[str, Any]], path: str, reason: str, size: int | None) -> None:
    entry = skipped.setdefault(path, {"path": path, "reason": reason, "sizes": []})
    if size is not None:
        entry["sizes"] = sorted({*entry["sizes"], size})


def read_manifest(out: Path) -> dict[str, Any]:
    """The manifest of a prepared folder; a missing, unreadable, truncated or malformed one is a
    one-line `DataError` that names the file and how to rebuild it."""
    path = out / MANIFEST_NAME
    if not path.exists():
        raise DataError(f"{out}: not a prepared folder (no {MANIFEST_NAME})")
    rebuild = (
        f"rebuild it: re-run `python -m ttsr.data prepare --src SRC --out {out}` with the "
        "folder's original source (finished shards are kept)"
    )
    try:
        manifest = json.loads(path.read_text())
    except OSError as exc:
        raise DataError(f"{path}: cannot read the manifest ({exc.strerror})") from None
    except ValueError as exc:  # also UnicodeDecodeError
        raise DataError(f"{path}: corrupted or truncated manifest ({exc}); {rebuild}") from None
    problem = _manifest_problem(manifest)
    if problem:
        raise DataError(f"{path}: not a valid manifest ({problem}); {rebuild}")
    return manifest


def _manifest_problem(manifest: Any) -> str | None:
    """What is wrong with a parsed manifest (the fields readers use), or None."""
    if not isinstance(manifest, dict):
        return f"a JSON {type(manifest).__name__}, not an object"
    if manifest.get("version") != MANIFEST_VERSION:
        return f"version {manifest.get('version')!r} is not supported"
    for key, kind in (("format", str), ("sizes", dict), ("items", list), ("skipped", list)):
        if not isinstance(manifest.get(key), kind):
            return f"{key!r} missing or not a {kind.__name__}"
    missing = [k for k in ("source", "seed", "test_fraction") if k not in manifest]
    if missing:
        return f"{', '.join(map(repr, missing))} missing"
    if manifest["format"] not in SHARD_FORMATS:
        return f"format {manifest['format']!r} is not one of {', '.join(SHARD_FORMATS)}"
    for size, stats in manifest["sizes"].items():
        counts = ("train", "test", "bytes", "shards")
        if not str(size).isdigit() or not isinstance(stats, dict):
            return f"sizes: entry {size!r} is not size -> counts"
        if not all(isinstance(stats.get(k), int) for k in counts):
            return f"sizes.{size}: needs integer {', '.join(counts)}"
    return None


def available_sizes(manifest: dict[str, Any]) -> list[int]:
    return sorted(int(s) for s in manifest["sizes"])
