"""Suite-wide: figures that slow tests measure (wall times, peak RSS, outage lengths) are printed
in one "measured figures" section at the end of the run, so CI's log carries them."""

from __future__ import annotations

import time

import pytest

_FIGURES: list[str] = []


@pytest.fixture
def figures(request):
    """``figures(text)`` records one line for the end-of-run section, prefixed by the test; the
    test's own wall time (set-up included) is recorded when it passes."""
    started = time.monotonic()

    def record(text: str) -> None:
        _FIGURES.append(f"{request.node.nodeid}: {text}")
        print(text)

    yield record
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.passed:
        _FIGURES.append(f"{request.node.nodeid}: passed in {time.monotonic() - started:.0f} s")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("measured figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
