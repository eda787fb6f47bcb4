"""How many CPUs this process may use: its affinity mask, cut by a cgroup CPU quota.

``os.cpu_count()`` is the host's count: in an 8-CPU pod on a 64-core host it says 64. Python
3.11 has no call that reads the cgroup quota (3.13's ``os.process_cpu_count`` honours only the
affinity mask) and Ray's reader is private, so the two cgroup files are read here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup quota allows (fractional), or None without a quota.

    cgroup v2: ``cpu.max`` holds ``"<quota> <period>"`` or ``"max <period>"``; cgroup v1:
    ``cpu/cpu.cfs_quota_us`` (-1 = none) over ``cpu/cpu.cfs_period_us``. A file that is missing
    or unreadable counts as no quota.
    """
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        parts = v2.split()
        return _ratio(*parts) if len(parts) == 2 else None
    return _ratio(
        _read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us")
    )


def _ratio(quota: str | None, period: str | None) -> float | None:
    try:
        q, p = int(quota), int(period)
    except (TypeError, ValueError):  # a file missing, or "max" (no quota)
        return None
    return q / p if q > 0 and p > 0 else None


def usable_cpus(root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may use (at least 1): the affinity mask's size, no more than the cgroup
    quota rounded up (a 2.5-CPU quota gives 3 processes, each throttled a little)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity call (macOS)
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        count = min(count, math.ceil(limit))
    return max(1, count)
