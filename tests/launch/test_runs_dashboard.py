"""`tessera dashboard` in a real headless chromium: the page loads, lists a run this test
trained, draws its loss curve from every logged step, and follows a live run's new steps."""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.request

import pytest
from launch_support import environment, start, tessera, tiny_recipe, wait_for

from tessera.launch.registry import Registry
from tessera.loggers.jsonl import read_jsonl

pytestmark = pytest.mark.browser
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser():
    if CHROMIUM is None or DRIVER is None:
        pytest.skip(
            "BROWSER TEST NOT RUN: chromium and chromedriver are missing; install Debian's "
            "chromium chromium-driver (.ci/run does)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _losses(run) -> dict[int, float]:
    return {
        r["step"]: r["loss/train"] for r in read_jsonl(run / "metrics.jsonl") if "loss/train" in r
    }


def test_the_dashboard_shows_a_trained_run_and_its_loss_curve(tmp_path, browser):
    home = tmp_path / "home"
    env = environment(home)
    recipe = tiny_recipe(
        tmp_path,
        max_duration="12ba",
        loggers={"progress": {"log_interval": "1ba"}, "jsonl": {}},
        callbacks={"speed_monitor": {"window": 2}},
    )
    trained = tessera("train", str(recipe), env=env)
    assert trained.returncode == 0, trained.stderr
    (run,) = Registry(home / "registry.db").runs()
    losses = _losses(run.folder)
    assert len(losses) == 12

    log = tmp_path / "dashboard.log"
    server = start("dashboard", "--port", "0", "--token", "s3cret", env=env, log=log)
    try:
        address = r"http://127\.0\.0\.1:\d+/"
        base = wait_for(lambda: re.search(address, log.read_text()), 60, "listening").group(0)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "api/runs", timeout=10)
        assert refused.value.code == 401  # the token is required
        post = urllib.request.Request(base + "api/runs?token=s3cret", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as read_only:
            urllib.request.urlopen(post, timeout=10)
        assert read_only.value.code == 405

        browser.get(f"{base}?token=s3cret#run={run.id}")
        row = wait_for(
            lambda: browser.find_elements("css selector", f'tr[data-run="{run.id}"]'), 20, "row"
        )[0]
        assert "tiny" in row.text and "completed" in row.text
        chart = browser.find_element("id", "chart-loss")
        wait_for(lambda: chart.get_attribute("data-count") == "12", 20, "12 loss points")
        polyline = chart.find_element("css selector", "polyline")
        assert len(polyline.get_attribute("points").split()) == 12
        # The axis labels are the run's highest and lowest loss and its first and last step.
        top, bottom, first, last = [
            text.text for text in chart.find_elements("css selector", "text")
        ]
        assert float(top) == pytest.approx(max(losses.values()), rel=1e-3)
        assert float(bottom) == pytest.approx(min(losses.values()), rel=1e-3)
        assert (first, last) == ("step 1", "step 12")
        throughput = browser.find_element("id", "chart-throughput")
        assert int(throughput.get_attribute("data-count")) > 0

        # While a run is live, the page follows its new steps.
        Registry(home / "registry.db").update(run.id, status="running")
        with open(run.folder / "metrics.jsonl", "a") as metrics:
            metrics.write(json.dumps({"step": 13, "time": time.time(), "loss/train": 2.5}) + "\n")
        wait_for(lambda: chart.get_attribute("data-count") == "13", 20, "the 13th point")
    finally:
        server.terminate()
        server.wait(timeout=30)
