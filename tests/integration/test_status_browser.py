"""The status page in a real headless browser (Debian's chromium driven by Selenium): the open
incident is visible, the embeddable banner turns up red on another site's page, and a screenshot
of the page is kept as a test artifact."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from mailfort.status.components import Component, ComponentState
from mailfort.status.repository import StatusRepository
from tests.integration.status_web_support import start_web_node, wait_for, with_repository

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TITLE = "Incoming mail is delayed"
TEXT = "A storage server failed; no mail is lost and the queue is being delivered."


def _require(path: str, package: str) -> None:
    if not (Path(path).is_file() and os.access(path, os.X_OK)) and shutil.which(path) is None:
        pytest.fail(f"{path} is missing: install the Debian package {package} (`make test` does)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    node, base = start_web_node(tmp_path_factory.mktemp("browser"), {})

    async def seed(repository: StatusRepository) -> None:
        await repository.open_incident(
            time.time(), TITLE, TEXT, {Component.INCOMING: ComponentState.MAJOR_OUTAGE}
        )

    try:
        with_repository(node, seed)
        with httpx.Client(base_url=base, timeout=10, trust_env=False) as client:
            wait_for(lambda: client.get("/"), lambda r: TEXT in r.text, what="seeded incident")
        yield base
    finally:
        node.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    _require(CHROMIUM, "chromium")
    _require(CHROMEDRIVER, "chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: the tests run as root in a container, where chromium's sandbox cannot start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000",
                     "--disable-dev-shm-usage", "--no-proxy-server", "--lang=en-US"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _artifact() -> Path:
    folder = Path(os.environ.get("MAILFORT_TEST_ARTIFACTS") or "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "status-page.png"


def test_status_page_shows_the_incident_in_a_browser(site: str, browser: WebDriver) -> None:
    browser.get(site + "?lang=en")
    overall = browser.find_element(By.CSS_SELECTOR, "p.overall")
    assert overall.is_displayed()
    assert overall.text == "Major outage"
    incident = browser.find_element(By.CSS_SELECTOR, "article.incident")
    assert incident.is_displayed()
    assert TITLE in incident.text and TEXT in incident.text
    # The state is told in words too, not by colour alone.
    rows = browser.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert any("Incoming mail (SMTP)" in r.text and "Major outage" in r.text for r in rows)
    shot = _artifact()
    shot.unlink(missing_ok=True)
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000, f"screenshot {shot} looks empty ({len(data)} bytes)"


def test_banner_script_puts_a_red_notice_on_another_site(site: str, browser: WebDriver) -> None:
    # The provider's homepage: another origin (another port on loopback) embedding the script.
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body><h1>Provider homepage</h1>"
        f'<script src="{site}banner.js" data-lang="de"></script></body></html>'
    ).encode()

    class Homepage(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: object) -> None:
            pass

    homepage = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Homepage)
    thread = threading.Thread(target=homepage.serve_forever, daemon=True)
    thread.start()
    try:
        browser.get(f"http://127.0.0.1:{homepage.server_address[1]}/")
        _check_banner(browser)
        # No public_url here, so banner.json links relative to the status server; the script
        # resolves them there, not on the homepage that embeds it.
        link = browser.find_element(By.CSS_SELECTOR, "#mailfort-status-banner a")
        href = link.get_attribute("href") or ""
        assert href.startswith(f"{site}incidents/"), href
    finally:
        homepage.shutdown()
        homepage.server_close()


def _check_banner(browser: WebDriver) -> None:
    banner = WebDriverWait(browser, 15).until(
        lambda d: d.find_element(By.ID, "mailfort-status-banner")
    )
    assert banner.is_displayed()
    assert f"Störung: {TITLE}" in banner.text and TEXT in banner.text
    assert banner.value_of_css_property("background-color") in (
        "rgba(180, 35, 24, 1)",
        "rgb(180, 35, 24)",
    )
    first = browser.find_element(By.CSS_SELECTOR, "body > *")
    assert first.get_attribute("id") == "mailfort-status-banner", "the notice must come first"
