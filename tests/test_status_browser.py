"""The status page under real gunicorn (two gevent workers), read by requests and rendered in headless Chromium."""

from __future__ import annotations

import io
import os
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.fakes.backend import Backend
from tests.gateway import Gateway, echo_toml

pytestmark = pytest.mark.e2e

CATCH_ALL = "/<path:rest>"
OK_REQUESTS = 40
FAILED_REQUESTS = 6
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The page's chart colours (app/operators/status/templates/status/page.html).
BAR_BLUE = (0x2B, 0x6C, 0xB0)
ERROR_RED = (0xC5, 0x30, 0x30)


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    """The echo backend behind the module's gateway."""
    with Backend("echo") as running:
        yield running


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, backend: Backend) -> Iterator[Gateway]:
    """Two workers forwarding everything to ``backend``, which has had some traffic spread over both."""
    running = Gateway(tmp_path_factory.mktemp("gateway"), echo_toml(backend.url), workers=2)
    try:
        running.start()

        def one(path: str) -> int:
            # A connection per request, so both workers accept some.
            return requests.get(running.url + path, headers={"Connection": "close"}, timeout=10).status_code

        paths = [f"/hello?n={n}" for n in range(OK_REQUESTS)] + ["/_/status/500"] * FAILED_REQUESTS
        with ThreadPoolExecutor(max_workers=12) as pool:
            assert sorted(pool.map(one, paths)) == [200] * OK_REQUESTS + [500] * FAILED_REQUESTS
        yield running
    finally:
        running.stop()


def catch_all_figures(page: str) -> tuple[int, int]:
    """Requests and 5xx of the catch-all route as the page shows them."""
    row = re.search(r'<tr data-route="/&lt;path:rest&gt;">(.*?)</tr>', page, re.S)
    assert row is not None
    requests_cell = re.search(r'class="num requests">([\d,]+)<', row.group(1))
    errors_cell = re.search(r'class="num server-errors">([\d,]+)<', row.group(1))
    assert requests_cell is not None and errors_cell is not None
    return int(requests_cell.group(1).replace(",", "")), int(errors_cell.group(1).replace(",", ""))


def test_every_worker_shows_the_sum_of_all_workers(gateway: Gateway) -> None:
    """Whichever worker answers, the counts are those of the whole gateway (the /metrics view)."""
    wanted = (OK_REQUESTS + FAILED_REQUESTS, FAILED_REQUESTS)
    seen: dict[str, tuple[int, int]] = {}
    deadline = time.monotonic() + 15
    # Other workers' counts reach the shared files within a second (their batch flush): poll for it.
    while time.monotonic() < deadline and (len(seen) < 2 or set(seen.values()) != {wanted}):
        page = requests.get(gateway.url + "/status", headers={"Connection": "close"}, timeout=5)
        assert page.status_code == 200
        worker = re.search(r'<span id="worker">(\d+)</span>', page.text)
        assert worker is not None
        seen[worker.group(1)] = catch_all_figures(page.text)
        time.sleep(0.05)
    assert len(seen) == 2, f"one worker answered every time: {seen}"
    assert set(seen.values()) == {wanted}


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium through the system chromedriver, with a fresh profile; skipped if not installed."""
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which("chromium")) or not (
            os.access(CHROMEDRIVER, os.X_OK) or shutil.which("chromedriver")):
        message = "Chromium is not installed: apt-get install chromium chromium-driver (.ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM if os.access(CHROMIUM, os.X_OK) else str(shutil.which("chromium"))
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,2400", "--hide-scrollbars"):
        options.add_argument(flag)
    driver_path = CHROMEDRIVER if os.access(CHROMEDRIVER, os.X_OK) else str(shutil.which("chromedriver"))
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(15)
    try:
        yield driver
    finally:
        driver.quit()


def visible(element: WebElement) -> WebElement:
    """The element, asserted displayed and of non-zero size."""
    assert element.is_displayed(), element.get_attribute("outerHTML")
    assert element.size["width"] > 0 and element.size["height"] > 0, element.size
    return element


def region(screenshot: Image.Image, element: WebElement, scale: float) -> Image.Image:
    """The part of the screenshot where ``element`` was drawn."""
    rect = element.rect
    box = (int(rect["x"] * scale), int(rect["y"] * scale),
           int((rect["x"] + rect["width"]) * scale), int((rect["y"] + rect["height"]) * scale))
    assert box[2] <= screenshot.width and box[3] <= screenshot.height, f"{box} is outside the screenshot"
    return screenshot.crop(box)


def pixels_near(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    """How many pixels of ``image`` are within ``tolerance`` of ``colour`` on every channel."""
    data = image.convert("RGB").tobytes()
    return sum(1 for index in range(0, len(data), 3)
               if all(abs(data[index + offset] - colour[offset]) <= tolerance for offset in range(3)))


def test_the_page_renders_in_chromium(gateway: Gateway, browser: webdriver.Chrome, tmp_path: Path) -> None:
    """The essential elements are there and visible, and the screenshot shows the charts drawn."""
    browser.get(gateway.url + "/status?refresh=off")
    time.sleep(1.1)  # the rate series takes at most one reading a second: let one second pass
    browser.get(gateway.url + "/status?refresh=off")  # a second reading: the sparkline has a line
    assert browser.title == "Frontdesk status"

    routes = visible(browser.find_element(By.ID, "routes-table"))
    listed = [row.get_attribute("data-endpoint") for row in routes.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert "routes.r0_rest" in listed and "status.page" in listed

    echo = visible(browser.find_element(By.CSS_SELECTOR, 'table.targets[data-upstream="echo"]'))
    target = visible(echo.find_element(By.CSS_SELECTOR, "tr.target"))
    assert target.get_attribute("data-state") == "up"
    assert visible(target.find_element(By.CSS_SELECTOR, ".state .badge")).text == "up"

    traffic_row = browser.find_element(By.CSS_SELECTOR, 'tr[data-route="/<path:rest>"]')
    latency = visible(traffic_row.find_element(By.CSS_SELECTOR, "svg.latency"))
    assert len(latency.find_elements(By.CSS_SELECTOR, "rect[fill='#2b6cb0']")) >= 1
    errors_bar = visible(browser.find_element(By.CSS_SELECTOR, "#error-ratio svg"))
    rate_chart = visible(browser.find_element(By.ID, "rate-chart"))
    assert rate_chart.find_elements(By.TAG_NAME, "polyline"), "the second view should draw the sparkline"

    png = browser.get_screenshot_as_png()
    (tmp_path / "status.png").write_bytes(png)  # kept with the test's files for a person to look at
    screenshot = Image.open(io.BytesIO(png)).convert("RGB")
    scale = screenshot.width / browser.execute_script("return window.innerWidth")
    assert len(screenshot.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 20, "the screenshot is blank"
    # The charts were painted, not just present in the DOM: their regions hold the bars' colours.
    assert pixels_near(region(screenshot, latency, scale), BAR_BLUE) >= 20
    assert pixels_near(region(screenshot, errors_bar, scale), ERROR_RED) >= 5  # 6 of 46 answers were 5xx
    assert pixels_near(region(screenshot, rate_chart, scale), BAR_BLUE) >= 20
