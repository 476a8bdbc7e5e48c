"""The "Try it" page opened from disk says how to view it (issue 39, item 5).

A browser refuses a page's fetch() on file://, so from disk the demo cannot read its
model: the page must say so and give the one command that serves the book (or
``make serve``), not "the demo's files are missing". The Makefile's target serves what
the page names. Screenshot: ``book/_build/screenshots/try_it-from-disk.png``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGE = "try_it.html"
COMMAND = "python3 -m http.server --directory book/_build/html 8000"
ADDRESS = "http://127.0.0.1:8000/try_it.html"


@pytest.mark.browser
def test_try_it_opened_from_disk_says_how_to_serve_it(site, driver, screenshots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get((site / PAGE).resolve().as_uri())
    demo = driver.find_element(By.ID, "fer-demo")
    WebDriverWait(driver, 30).until(lambda _: demo.get_attribute("data-state"))
    message = demo.find_element(By.CSS_SELECTOR, ".fer-demo-message")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", message)
    driver.save_screenshot(str(screenshots / "try_it-from-disk.png"))
    text = " ".join(message.text.split())
    assert demo.get_attribute("data-state") == "file", text
    assert "missing" not in text and "Failed to fetch" not in text, text
    assert "make serve" in text and COMMAND in text and ADDRESS in text, text
    assert message.find_element(By.TAG_NAME, "a").get_attribute("href") == ADDRESS
    # Nothing else happens: the controls wait, and no request failed on the console.
    assert not driver.find_element(By.ID, "fer-demo-file").is_enabled()
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def test_make_serve_serves_what_the_page_names():
    """`make serve` (dry run) serves the folder and port the page tells a reader to open."""
    script = (REPO / "book" / "_demo" / "try_it.js").read_text()
    assert COMMAND in script and ADDRESS in script
    dry = subprocess.run(["make", "-n", "serve"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    served = next(line for line in dry.splitlines() if "http.server" in line).split()
    assert served[served.index("--directory") + 1] == "book/_build/html"
    assert served[-1] == "8000" and "127.0.0.1" in served
