"""Suite-wide:

- figures that slow tests measure (wall times, peak RSS, outage lengths) are printed in one
  "measured figures" section at the end of the run, so CI's log carries them;
- the suite runs on pytest-xdist workers (``-n`` in pyproject.toml) in groups: one per test file
  (its module fixtures — servers, browsers, trained models — are set up once) and one for
  tests/cluster/, whose files share one session cluster; files with slow tests go first.
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


MAX_WORKERS = 5  # the slow tests start Ray clusters and servers: more would crowd a big machine


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: pytest without xdist must still run
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker more than cores. Much of a test's time is spent waiting (a
    process or server starting, a poll, a driver's shutdown) with its core idle; the extra
    worker fills those gaps (2 cores: 3 workers)."""
    return min(MAX_WORKERS, (os.cpu_count() or 1) + 1)


def pytest_configure(config):
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:  # an xdist worker: torch in this process takes its share of the cores, not all
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


def pytest_collection_modifyitems(items):
    """Files with slow tests first (the order within a file kept): on xdist workers the long
    ones start at once and the many short ones fill the gaps at the end."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # a stable sort


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_xdist_make_scheduler(config, log):
    """Tests go to the workers a file at a time (its module fixtures are set up once), and
    tests/cluster/ as one (its files share a session cluster), in collection order.

    A scheduler of our own because xdist 3.8's ``--dist loadgroup`` renames items in a way
    pytest 9 no longer sees (``item._nodeid``), so its groups silently do nothing."""
    from xdist.scheduler import LoadScopeScheduling

    class FilesAndCluster(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "tests/cluster" if path.startswith("tests/cluster/") else path

    config.option.loadscopereorder = False  # not by test count: slow files first
    return FilesAndCluster(config, log)


def _sigint_state() -> tuple[bool, bool]:
    """(ignored, blocked) for SIGINT in this process and the calling thread, at the kernel level:
    what a child started from here inherits (a Python-level handler is not inherited)."""
    fields = dict(
        line.split(":\t", 1)
        for line in Path("/proc/thread-self/status").read_text().splitlines()
        if ":\t" in line
    )
    bit = 1 << (2 - 1)  # SIGINT
    return bool(int(fields["SigIgn"], 16) & bit), bool(int(fields["SigBlk"], 16) & bit)


_SIGINT_AT_START: list[tuple[bool, bool]] = []  # this process's state before its first test
_LAST_TEST = ["none"]  # the test that ran before, on this worker


@pytest.fixture(autouse=True)
def _sigint_left_as_it_was(request):
    """A test or fixture that leaves SIGINT ignored or blocked in the worker makes every later
    child process deaf to Ctrl-C, and the signal tests that run after it fail. Checked around
    each test and against the worker's state before its first test (a module fixture's set-up or
    teardown changes it between tests, where the before/after of one test cannot see it)."""
    if not Path("/proc/thread-self/status").exists():
        yield
        return
    before = _sigint_state()
    if not _SIGINT_AT_START:
        _SIGINT_AT_START.append(before)
    previous, _LAST_TEST[0] = _LAST_TEST[0], request.node.nodeid
    if before != (first := _SIGINT_AT_START[0]):
        _SIGINT_AT_START[0] = before  # report it once, at the test where it is first seen
        pytest.fail(
            f"SIGINT (ignored, blocked) is {before} before this test, was {first} "
            f"before the worker's first test; the test before on this worker: {previous}"
        )
    yield
    after = _sigint_state()
    if after != before:
        pytest.fail(f"SIGINT (ignored, blocked) was {before} before the test and {after} after")
