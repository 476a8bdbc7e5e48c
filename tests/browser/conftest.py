"""Fixtures for the browser tests: the built HTML book, served locally, in headless Chromium.

The site is ``book/_build/html`` (``make book``; ``BOOK_HTML=/path/to/html`` tests another
build). It is served by a threaded ``http.server`` on 127.0.0.1 and opened in the system's
Chromium through the system's chromedriver (Debian: ``apt-get install chromium
chromium-driver``). Selenium Manager is never asked to download a browser or driver.
Chromium resolves no host name but localhost, so the tests give the same answer with or
without a network: a request to any other host shows in the performance log and fails.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("BOOK_HTML") or REPO_ROOT / "book" / "_build" / "html")
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1280, 1000)  # wide enough for the book theme's desktop layout
TIMEOUT_S = 60


def site_pages() -> list[str]:
    """The pages to open: every ``.html`` at the top level of the built site."""
    return sorted(path.name for path in SITE.glob("*.html"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``page`` by the built pages (one placeholder when nothing is built,
    so the ``site`` fixture can skip with a reason instead of an empty parameter set)."""
    if "page" in metafunc.fixturenames:
        metafunc.parametrize("page", site_pages() or ["index.html"])


@pytest.fixture(scope="session")
def site() -> Path:
    """The built HTML folder; skips when the book is not built."""
    if not (SITE / "index.html").is_file():
        pytest.skip(f"no built book at {SITE / 'index.html'} (run `make book`)")
    return SITE


@pytest.fixture(scope="session")
def screenshots(site: Path) -> Path:
    """Where each page's full-page PNG goes: ``book/_build/screenshots`` (ignored by git)."""
    path = site.parent / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


class _QuietHandler(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        # Chromium asks the server root for /favicon.ico by itself when a page declares no
        # icon (the book declares none): answer "no content" rather than a 404 that the
        # page never asked for.
        if self.path == "/favicon.ico":
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's name
        pass


@pytest.fixture(scope="session")
def server(site: Path):
    """``http://127.0.0.1:PORT`` serving the built site (a free port, one thread a request)."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="book-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def driver():
    """Headless Chromium with its console and network (performance) logs recorded."""
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not binary.exists():
            pytest.skip(f"{binary} not found (Debian: apt-get install {package})")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="book-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-extensions",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--no-proxy-server",
        # Offline for real: every host name but localhost fails to resolve.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    with pytest.MonkeyPatch.context() as patch:
        # Never let Selenium Manager look for (or download) a browser or a driver.
        patch.setenv("SE_OFFLINE", "true")
        browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        browser.set_page_load_timeout(TIMEOUT_S)
        browser.set_script_timeout(TIMEOUT_S)
        # A fresh profile opens a new-tab page first (its remote part fails to resolve):
        # let that finish and drop its log entries, so the pages' logs hold only their own.
        browser.get("about:blank")
        time.sleep(1)
        browser.get_log("performance")
        browser.get_log("browser")
        try:
            yield browser
        finally:
            browser.quit()
            shutil.rmtree(profile, ignore_errors=True)
