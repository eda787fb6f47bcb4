"""ttsr.cpus: the worker count honours the affinity mask and a cgroup CPU quota (fake files)."""

from __future__ import annotations

import importlib

import pytest

from ttsr import cpus


@pytest.fixture
def affinity(monkeypatch):
    def set_cpus(n: int) -> None:
        monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: set(range(n)))
        monkeypatch.setattr(cpus.os, "cpu_count", lambda: 64)  # the host: never the answer

    return set_cpus


def test_affinity_without_quota(tmp_path, affinity):
    affinity(6)
    assert cpus.cgroup_cpu_limit(tmp_path) is None
    assert cpus.usable_cpus(tmp_path) == 6


@pytest.mark.parametrize(
    "cpu_max,expected",
    [("800000 100000", 8), ("250000 100000", 3), ("50000 100000", 1), ("max 100000", 12)],
)
def test_cgroup_v2_quota(tmp_path, affinity, cpu_max, expected):
    affinity(12)
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert cpus.usable_cpus(tmp_path) == expected


def test_cgroup_v1_quota(tmp_path, affinity):
    affinity(64)
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpus.cgroup_cpu_limit(tmp_path) == 4.0
    assert cpus.usable_cpus(tmp_path) == 4
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # v1's "no quota"
    assert cpus.usable_cpus(tmp_path) == 64


def test_affinity_below_quota_wins(tmp_path, affinity):
    affinity(2)
    (tmp_path / "cpu.max").write_text("800000 100000")
    assert cpus.usable_cpus(tmp_path) == 2


def test_garbage_is_no_quota(tmp_path, affinity):
    affinity(3)
    (tmp_path / "cpu.max").write_text("lots 0")
    assert cpus.usable_cpus(tmp_path) == 3


def test_prepare_pool_is_sized_by_usable_cpus(tmp_path, monkeypatch):
    """The local path's pool asks ttsr.cpus, not os.cpu_count()."""
    prep = importlib.import_module("ttsr.data.prepare")  # ttsr.data.prepare is also a function

    sizes = []

    class FakePool:
        def __init__(self, max_workers):
            sizes.append(max_workers)
            raise RuntimeError("stop here")

    monkeypatch.setattr(prep, "usable_cpus", lambda: 3)
    monkeypatch.setattr(prep.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(prep, "ProcessPoolExecutor", FakePool)
    jobs = [prep.ChunkJob("s", "o", k, ["a.png"], [32], 0, 0.2, "png", False) for k in range(8)]
    with pytest.raises(RuntimeError, match="stop here"):
        prep._run_jobs(jobs, None, progress=False)
    assert sizes == [3]
