"""Suite-wide:

- figures that slow tests measure (wall times, peak RSS, outage lengths) are printed in one
  "measured figures" section at the end of the run, so CI's log carries them;
- the suite runs on pytest-xdist workers (``-n`` in pyproject.toml) in groups: one per test file
  (its module fixtures — servers, browsers, trained models — are set up once) and one for
  tests/cluster/, whose files share one session cluster.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURE = "figure"  # the user property a figure travels in (from an xdist worker to the controller)
_FIGURES: list[str] = []


@pytest.fixture
def figures(request):
    """``figures(text)`` records one line for the end-of-run section, prefixed by the test; the
    test's own wall time (set-up included) is recorded when it passes."""
    started = time.monotonic()

    def record(text: str) -> None:
        request.node.user_properties.append((FIGURE, text))
        print(text)

    yield record
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.passed:
        record(f"passed in {time.monotonic() - started:.0f} s")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report


def pytest_runtest_logreport(report):
    if report.when == "teardown":  # its properties are all the test's: set-up, call, teardown
        _FIGURES.extend(f"{report.nodeid}: {v}" for k, v in report.user_properties if k == FIGURE)


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("measured figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


def pytest_configure(config):
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:  # an xdist worker: torch in this process takes its share of the cores, not all
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


def pytest_collection_modifyitems(items):
    for item in items:
        path = Path(item.path).resolve().relative_to(ROOT)
        group = "tests/cluster" if path.parts[:2] == ("tests", "cluster") else path.as_posix()
        item.add_marker(pytest.mark.xdist_group(group))
