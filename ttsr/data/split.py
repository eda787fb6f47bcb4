"""Deterministic, content-keyed choices: the train/test split and the nested fraction order.

Both hash the image's content hash with a seed, so they do not depend on file names, on which
other files exist, on the order they were processed in, or on the prepared size.
"""

from __future__ import annotations

import hashlib
import math

SPLITS = ("train", "test")


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
