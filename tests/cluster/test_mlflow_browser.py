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


def _assert_grid_is_seen(image, what: str) -> None:
    """What the card shows is the sample grid, large enough to judge: MLflow's card shows the
    webp thumbnail it makes of each step image (256 px wide; the full PNG, upscaled to tiles of
    >= 128 px, opens from it), and its pixels on screen are a picture (photo tiles under a
    header of dark text), not an empty grey box."""
    import io

    import numpy as np
    from PIL import Image

    natural = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert natural[0] >= 256, (what, natural)  # before: the 138-px grid itself
    rgb = np.asarray(Image.open(io.BytesIO(image.screenshot())).convert("RGB"), dtype=float)
    shown = rgb.mean(axis=2)
    assert shown.shape[1] >= 200, (what, shown.shape)  # displayed, not a thumbnail
    assert shown.std() > 20, (what, shown.std())  # not uniform
    # The header is the band above the first row of colour (the photos); black text on white
    # has none. It is there, it is a band (not the whole image), and it holds dark strokes.
    colourful = (rgb.max(axis=2) - rgb.min(axis=2)).max(axis=1) > 40
    band = int(np.argmax(colourful))
    assert colourful.any() and 0.05 * shown.shape[0] < band < 0.5 * shown.shape[0], (what, band)
    strokes = (shown[:band] < 128).mean()  # a white band without the names has none
    assert strokes > 0.002, (what, strokes)


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
        loaded = "img => img.complete && img.naturalWidth > 0"
        page.wait_for_function(loaded, arg=image.element_handle())
        _assert_grid_is_seen(image, "epoch 0")
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
            if epoch == EPOCHS:
                _assert_grid_is_seen(image, f"epoch {epoch}")
            if epoch in (1, EPOCHS):
                # The card lists the run's params above the image: bring the image into view.
                image.scroll_into_view_if_needed()
                shots[epoch] = _screenshot(page, f"mlflow-image-slider-epoch{epoch}.png")
        assert set(shots) == {1, EPOCHS}
    except BaseException:
        _screenshot(page, "mlflow-image-slider-failed.png")
        raise


@pytest.fixture(scope="module")
def study_runs(logged_run):
    """A loss-weights invocation's runs as the driver and its trials make them (the parent run
    with its saved view, the warm start, two configurations x two seeds named and tagged by
    `tune.execution.trainable.trial_naming`), with kept-epoch metrics; no training (the tiny
    run above covers that)."""
    from pathlib import Path

    from ttsr.tracking import MlflowTracker
    from tune.execution import parent_run
    from tune.execution.trainable import trial_naming
    from tune.study.studies import load_study

    server, _ = logged_run
    shipped = Path(__file__).resolve().parents[2] / "experiments.yaml"
    study = load_study(shipped, "loss-weights", "demo")
    parent = parent_run.ParentRun.start(
        server.uri, study, run_name="loss-weights-browser", tags={}, overrides={}
    )
    meta = parent.trial_meta(study)
    with parent:
        warm = MlflowTracker(
            tracking_uri=server.uri, experiment=study.name, run_name="warm start",
            parent_run_id=parent.run_id,
            tags={parent_run.ROLE_TAG: "warm-start", parent_run.CONFIG_TAG: "warm start"},
        )  # fmt: skip
        warm.log_metrics({"best_val_psnr": 24.0}, step=20)
        warm.end()
        configs = {}
        for weights, psnr in (((0.0, 0.0, 0.0), 26.7), ((30.0, 3.0, 0.05), 26.5)):
            for seed in (0, 1):
                values = dict(zip(("per_w", "tpl_w", "adv_w"), weights, strict=True), seed=seed)
                shown, config, name = trial_naming(values, meta)
                run = MlflowTracker(
                    tracking_uri=server.uri, experiment=study.name, run_name=name,
                    parent_run_id=parent.run_id,
                    tags={parent_run.CONFIG_TAG: config, parent_run.ROLE_TAG: "trial"},
                )  # fmt: skip
                run.log_params({k: values[k] for k in shown})
                run.log_metrics({"best_val_psnr": psnr + seed / 100, "best_epoch": 2}, step=2)
                run.end()
                configs[config] = configs.get(config, 0) + 1
    return server, parent, configs


def test_the_study_link_opens_its_trials_grouped_by_configuration(page, study_runs):  # noqa: F811
    import re

    from tune.execution.parent_run import comparison_url

    server, parent, configs = study_runs
    page.goto(comparison_url(server.uri, parent.experiment_id, parent.run_id))
    try:
        page.get_by_text(f"{sum(configs.values())} matching runs").wait_for()
        groups = page.get_by_text(re.compile(r"^Group: "))
        groups.first.wait_for()
        shown = sorted(groups.nth(i).inner_text() for i in range(groups.count()))
        assert shown == sorted(f"Group: {c}" for c in configs)  # one row per configuration
        body = page.inner_text("body")
        assert "warm start" not in body  # not mistaken for a trial
        assert "26.7" in body and "(average)" in body  # the group's mean over its seeds
    finally:
        _screenshot(page, "mlflow-study-grouped-by-config.png")
