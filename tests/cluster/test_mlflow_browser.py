"""What a person sees of one training run in the MLflow UI (3.17), in headless Chromium: the
experiment opens on its training runs, and the run's image slider steps through the sample
grids, epoch 1 to the last. Screenshots go to test-artifacts/.

Needs no Ray cluster: its own ``mlflow server`` (tests/mlflow_server.py) and a tiny run of the
real training loop logged to it. Chromium and its fixtures are test_browser.py's.
"""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from mlflow_server import MlflowServer, train_tiny_run

from ttsr.tracking import ui_url

from .test_browser import TIMEOUT_MS, _screenshot, browser, page  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

EPOCHS = 3  # images at steps 0 (before training), 1, 2, 3


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    with MlflowServer(root / "server") as server:
        tiny = train_tiny_run(server.uri, root / "run", experiment="ui-check", epochs=EPOCHS)
        run = MlflowClient(server.uri).get_run(tiny["run_id"])
        yield server, run


def test_experiment_opens_on_its_training_runs(page, logged_run):  # noqa: F811
    server, run = logged_run
    page.goto(ui_url(server.uri, run.info.experiment_id))
    try:
        link = page.locator(f'a[href$="/runs/{run.info.run_id}"]').first
        link.wait_for()
        assert run.info.run_name in link.inner_text()
        page.wait_for_url(f"**/experiments/{run.info.experiment_id}/runs?**")
        body = page.inner_text("body")
        assert "Token Usage" not in body and "No traces" not in body  # not the GenAI pages
        assert "Model training" in body  # the sidebar's switch, on the training side
    finally:
        _screenshot(page, "mlflow-training-runs.png")


def _step_of(image) -> int:
    src = image.get_attribute("src")  # get-artifact?path=images%2F<key>%2Bstep%2B<N>%2B...
    return int(src.split("%2Bstep%2B", 1)[1].split("%2B", 1)[0])


def test_image_slider_shows_epoch_1_and_the_last_epoch(page, logged_run):  # noqa: F811
    server, run = logged_run
    page.goto(ui_url(server.uri, run.info.experiment_id, run.info.run_id))
    page.get_by_placeholder("Search metric charts").fill("samples_test")
    card = (
        page.locator("div", has=page.get_by_text("samples_test", exact=True))
        .filter(has=page.get_by_role("slider"))
        .last
    )
    slider = card.get_by_role("slider")
    image = card.locator("img.rc-image-img")
    try:
        slider.wait_for()
        assert slider.get_attribute("aria-valuemax") == str(EPOCHS)
        assert _step_of(image) == 0
        shots = {}
        for epoch in range(1, EPOCHS + 1):
            slider.focus()
            page.keyboard.press("ArrowRight")
            page.wait_for_function(
                "([el, step]) => el.getAttribute('aria-valuenow') === String(step)",
                arg=[slider.element_handle(), epoch],
                timeout=TIMEOUT_MS,
            )
            page.wait_for_function(
                "([img, step]) => img.src.includes(`%2Bstep%2B${step}%2B`) && img.complete"
                " && img.naturalWidth > 0",
                arg=[image.element_handle(), epoch],
                timeout=TIMEOUT_MS,
            )
            assert _step_of(image) == epoch
            if epoch in (1, EPOCHS):
                # The card lists the run's params above the image: bring the image into view.
                image.scroll_into_view_if_needed()
                shots[epoch] = _screenshot(page, f"mlflow-image-slider-epoch{epoch}.png")
        assert set(shots) == {1, EPOCHS}
    except BaseException:
        _screenshot(page, "mlflow-image-slider-failed.png")
        raise
