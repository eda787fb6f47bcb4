"""What a person sees, in headless Chromium: the MLflow UI lists the finished study's parent run
with its child runs and opens the compare view for them; the Ray dashboard's cluster page shows
both nodes alive. Screenshots go to test-artifacts/ (repo root, gitignored).

Uses the cluster, server and finished studies of conftest.py (shared with test_multinode.py).
Chromium is the system one (/usr/bin/chromium); nothing is downloaded.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.parse
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tune.execution import parent_run

from .conftest import ARTIFACTS, SPREAD_STUDY, alive_nodes

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000  # per wait: the React apps render slowly on a loaded 2-core machine


@pytest.fixture(scope="module")
def browser():
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        yield page
    finally:
        context.close()


def _screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="module")
def spread_runs(spread_study, mlflow_server):
    """(experiment id, parent run, child runs) of the finished two-trial study."""
    assert spread_study.returncode == 0, spread_study.output[-3000:]
    client = MlflowClient(mlflow_server.uri)
    exp = client.get_experiment_by_name(SPREAD_STUDY)
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if parent_run.PARENT_TAG not in r.data.tags)
    children = [r for r in runs if r.data.tags.get(parent_run.PARENT_TAG) == parent.info.run_id]
    assert len(children) == 2
    return exp.experiment_id, parent, children


def test_mlflow_ui_lists_parent_and_child_runs(page, mlflow_server, spread_runs):
    exp_id, parent, children = spread_runs
    page.goto(f"{mlflow_server.uri}/#/experiments/{exp_id}/runs")
    try:
        # Rows link to their runs by id; the names are in the links (the cell may cut them short).
        parent_link = page.locator(f'a[href$="/runs/{parent.info.run_id}"]').first
        parent_link.wait_for()
        assert parent.info.run_name in parent_link.inner_text()
        # Child runs start collapsed under their parent: the button in the parent's name cell
        # expands them.
        page.locator(
            f'[role="gridcell"]:has(a[href$="/runs/{parent.info.run_id}"]) button'
        ).first.click()
        for child in children:
            link = page.locator(f'a[href$="/runs/{child.info.run_id}"]').first
            link.wait_for()
            assert child.info.run_name in link.inner_text()
    finally:
        _screenshot(page, "mlflow-runs.png")


def test_mlflow_compare_view_opens_for_child_runs(page, mlflow_server, spread_runs):
    exp_id, _, children = spread_runs
    ids = [c.info.run_id for c in children]
    query = urllib.parse.urlencode({"runs": json.dumps(ids), "experiments": json.dumps([exp_id])})
    page.goto(f"{mlflow_server.uri}/#/compare-runs?{query}")
    try:
        page.get_by_text(f"Comparing {len(ids)} Runs").first.wait_for()
        for child in children:
            page.get_by_text(child.info.run_id).first.wait_for()
            page.get_by_text(child.info.run_name).first.wait_for()
        # the per-epoch metric every trial logs
        page.get_by_text("val_psnr").first.wait_for()
    finally:
        _screenshot(page, "mlflow-compare.png")


def test_ray_dashboard_shows_both_nodes(page, ray_cluster):
    nodes = alive_nodes(ray_cluster.dashboard_url)
    assert len(nodes) == 2
    page.goto(f"{ray_cluster.dashboard_url}/#/cluster")
    try:
        # The node list shows each node's full id and "IP (Head)" / "IP"; the statistics
        # box counts nodes by state ("ALIVE x 2").
        for node in nodes:
            page.get_by_text(node["raylet"]["nodeId"], exact=True).first.wait_for()
        page.get_by_text("127.0.0.1 (Head)").first.wait_for()
        page.get_by_text("127.0.0.2").first.wait_for()
        text = page.inner_text("body")
        assert re.search(r"TOTAL\s*x\s*2\b", text), text[:2000]
        assert re.search(r"ALIVE\s*x\s*2\b", text), text[:2000]
    finally:
        _screenshot(page, "ray-dashboard-cluster.png")
