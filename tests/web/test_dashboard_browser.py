"""The dashboard in a real browser (headless Chromium through chromedriver), after real traffic: codes sent and
verified by clicking through the example app on its sandbox, reports delivered to the emulator. The screenshot is
kept in ``test-artifacts/`` (gitignored)."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

from tests.alarm.ranges import PREFIX, PREFIX_CONFIG, pump_a_range
from tests.conftest import AppFactory, ExampleAppFactory

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
PHONES = ("+8613711112222", "+8613711113333", "+14155550123")
WAIT = 20.0  # seconds a page may take to show what it is waited for; never asserted


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("Chromium and chromedriver are missing: `make servers` installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,1700")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def serving(app: Flask) -> Iterator[str]:
    """``app`` served over HTTP on a loopback port by a threaded werkzeug server; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def served_example(make_example_app: ExampleAppFactory) -> Iterator[tuple[Flask, str]]:
    """The example app on its sandbox, served over HTTP."""
    app = make_example_app()
    with serving(app) as base:
        yield app, base


def click_through(driver: WebDriver, base: str, phone: str, *, verify: bool) -> None:
    """Send a code to ``phone`` from the example page and, with ``verify``, type the captured code back in."""
    driver.get(base + "/")
    field = driver.find_element(By.ID, "phone")
    field.clear()
    field.send_keys(phone)
    driver.find_element(By.ID, "send").click()
    WebDriverWait(driver, WAIT).until(lambda d: d.find_element(By.ID, "captured").text.strip() not in ("", "-"))
    if verify:
        driver.find_element(By.ID, "verify").click()
        WebDriverWait(driver, WAIT).until(lambda d: d.find_element(By.ID, "verify-out").text.startswith("200"))


def severe(driver: WebDriver) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_the_dashboard_shows_the_traffic_clicked_through_the_example_app(
    served_example: tuple[Flask, str], browser: WebDriver
) -> None:
    app, base = served_example
    for phone in PHONES:
        click_through(browser, base, phone, verify=phone != PHONES[-1])
    token = browser.find_element(By.ID, "shown-token").text
    conversion = app.extensions["example_app"].conversion
    with app.app_context():
        assert conversion.flush(timeout=10) == 0

    severe(browser)  # drains the log: what the example app's own page said is not the dashboard's
    browser.find_element(By.ID, "dashboard-link").click()
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "sign-in").click()
    WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.ID, "requested").text == "3")

    rows = [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in browser.find_elements(By.CSS_SELECTOR, "#countries tbody tr")
    ]
    bars = browser.find_elements(By.CSS_SELECTOR, "#chart rect.requested")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    figures = (
        browser.find_element(By.ID, "verified").text,
        browser.find_element(By.ID, "rate").text,
        [row[:4] for row in rows],
        len(bars) >= 1,
        browser.find_element(By.CSS_SELECTOR, "#chart path.rate") is not None,
    )
    assert figures == ("2", "66.7 %", [["+1", "1", "0", "0.0 %"], ["+86", "2", "2", "100.0 %"]], True, True)
    assert severe(browser) == []


def test_the_dashboard_shows_a_prefix_alarm_on_its_countrys_row(make_app: AppFactory, browser: WebDriver) -> None:
    token = "browser-token"
    app, conversion = make_app(
        OTP_CONVERSION_STATS_TOKEN=token, OTP_CONVERSION_TENCENT_ENDPOINT="http://127.0.0.1:9", **PREFIX_CONFIG
    )
    pump_a_range(app, conversion)
    with serving(app) as base:
        browser.get(base + "/otp-conversion/")
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.ID, "sign-in").click()
        WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.ID, "alarm-banner").is_displayed())
        banner = browser.find_element(By.ID, "alarm-list").text
        (row,) = browser.find_elements(By.CSS_SELECTOR, "#countries tbody tr")
        cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard-prefix-alarm.png"))
        logged = severe(browser)
    assert banner.startswith(f"{PREFIX}... (+44) at 0.0 % over 40 sends")
    assert (cells[0], cells[-1].startswith(f"{PREFIX}... ALARM at 0.0 % since "), row.get_attribute("class")) == (
        "+44",
        True,
        "alarm",
    )
    assert logged == []
