"""The built-in sample set: offline, big enough, prepared lazily, safe under concurrency."""

from __future__ import annotations

import json
import multiprocessing
import socket

import pytest

from ttsr.data import open_dataset, sample_dataset_dir


@pytest.fixture
def offline(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("TTSR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_sample_set_builds_offline(offline):
    train = open_dataset(None, size=32, split="train")
    test = open_dataset(None, size=32, split="test")
    assert len(train) >= 48 and len(test) >= 12
    assert set(train.keys).isdisjoint(test.keys)
    item = train[0]
    assert item["HR"].shape == (3, 32, 32) and item["LR"].shape == (3, 8, 8)
    assert train.root.is_relative_to(offline)
    assert sample_dataset_dir(32) == train.root  # cached: same folder, nothing rebuilt


def _build(size: int, cache: str, queue) -> None:
    import os

    os.environ["TTSR_CACHE_DIR"] = cache
    queue.put(str(sample_dataset_dir(size)))


@pytest.mark.slow
def test_concurrent_builds_and_lazy_sizes(offline):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build, args=(32, str(offline), queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    roots = {queue.get(timeout=5) for _ in procs}
    assert len(roots) == 1
    root = sample_dataset_dir(32)
    assert str(root) in roots
    n32 = len(open_dataset(None, size=32, split="train"))
    sample_dataset_dir(48)  # a new size is prepared on first use; the old one stays
    manifest = json.loads((root / "manifest.json").read_text())
    assert set(manifest["sizes"]) == {"32", "48"}
    assert len(open_dataset(None, size=48, split="train")) == n32
