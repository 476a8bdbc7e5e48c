"""The built HTML book works offline: every page, opened in headless Chromium.

Each page must load nothing from a host other than the local server, log no console
error, show every image, typeset every formula with the MathJax served from
``_static/mathjax/`` (no raw ``\\(`` left, no TeX error), cut off no table, and link to no
local page that is missing. A full-page screenshot of each lands in ``book/_build/screenshots/``.

Run with ``make browser-test`` (builds the book first) or ``pytest -m browser tests/browser``.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from base64 import b64decode
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest

pytestmark = pytest.mark.browser

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# Schemes that never leave the browser.
INNER_SCHEMES = {"data", "blob", "about", "javascript", "chrome", "chrome-extension"}

# Resolves once MathJax has typeset the page, then once the web fonts the page uses are
# loaded; on a page that loads no MathJax, at once. Event-driven, no delay or polling:
# 1. the window's `load` event (at once if it has fired): every script the page's HTML
#    names has then run, MathJax's deferred component included, so `MathJax.startup`
#    exists if MathJax loaded at all. (Waiting on `load`, not on `driver.get` returning,
#    is what makes this hold on a loaded machine: the flake "N formulas but MathJax did
#    not start" was this script running before the component had.)
# 2. `MathJax.startup.promise`, MathJax 3's own readiness signal: it resolves after the
#    first typeset of the page, extensions loaded on demand included, or rejects.
# 3. `document.fonts.ready`: the CommonHTML fonts the typeset formulas asked for.
WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
const fonts = () => (document.fonts ? document.fonts.ready : Promise.resolve());
const loaded = document.readyState === "complete" ? Promise.resolve()
    : new Promise((resolve) => window.addEventListener("load", resolve, {once: true}));
const component = [...document.scripts].find((s) => /mathjax/i.test(s.src || ""));
loaded.then(() => {
    if (!component) return null;  // a page without formulas loads no MathJax
    const mj = window.MathJax;
    if (!(mj && mj.startup && mj.startup.promise)) {
        throw new Error("the page finished loading but " + component.src + " never ran");
    }
    return mj.startup.promise.then(() => mj.version || "unknown");
}).then(
    (version) => fonts().then(() => done({version: version, error: null})),
    (err) => done({version: null, error: String(err)}));
"""

# Resolves once every image of the page has loaded or failed (its own events, no polling).
WAIT_FOR_IMAGES = """
const done = arguments[arguments.length - 1];
Promise.all([...document.images].map((img) => img.complete ? null : new Promise((resolve) => {
    img.addEventListener("load", resolve, {once: true});
    img.addEventListener("error", resolve, {once: true});
}))).then(() => done(null));
"""

# What the page shows, after MathJax: problems found in the DOM.
INSPECT_PAGE = r"""
const origin = window.location.origin;
const untypeset = [...document.querySelectorAll(".math")]
    .filter((el) => !el.querySelector("mjx-container"))
    .map((el) => el.textContent.trim().slice(0, 80));
const texErrors = [...document.querySelectorAll("mjx-merror")]
    .map((el) => el.getAttribute("data-mjx-error") || el.textContent.slice(0, 80));
// Raw TeX delimiters left in the prose (code, scripts and typeset math excluded).
const skip = "pre, code, script, style, textarea, mjx-container, .highlight";
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const rawTex = [];
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.nodeValue;
    if ((text.includes("\\(") || text.includes("\\[")) && !node.parentElement.closest(skip)) {
        rawTex.push(text.trim().slice(0, 80));
    }
}
const images = [...document.images].map((img) => ({
    src: img.currentSrc || img.src, complete: img.complete, width: img.naturalWidth,
}));
const links = [...document.querySelectorAll("a[href]")]
    .filter((a) => !a.getAttribute("href").startsWith("#"))
    .map((a) => a.href)
    .filter((href) => href.startsWith(origin + "/"));
const mathjax = [...document.querySelectorAll("script[src]")]
    .map((s) => s.src).filter((src) => /mathjax/i.test(src));
return {untypeset, texErrors, rawTex, images, links, mathjax,
        mathCount: document.querySelectorAll(".math").length,
        typesetCount: document.querySelectorAll("mjx-container").length};
"""


# [table width, room, first words] of every table whose holder scrolls sideways.
WIDE_TABLES = """
const wide = [];
document.querySelectorAll('article table').forEach((table) => {
  const holder = table.parentElement;
  if (holder.scrollWidth > holder.clientWidth + 1) {
    wide.push([holder.scrollWidth, holder.clientWidth, table.innerText.slice(0, 50)]);
  }
});
return wide;
"""


def _network_events(driver) -> list[dict]:
    """The CDP Network events logged since the last call (the log drains on reading)."""
    events = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method", "").startswith("Network."):
            events.append(message)
    return events


def _wait_for_images(driver) -> None:
    """Until every image has loaded or failed (the driver's script timeout bounds it)."""
    driver.execute_async_script(WAIT_FOR_IMAGES)


def _full_page_png(driver, path: Path) -> None:
    """A screenshot of the whole page, not only the window (Chrome DevTools Protocol)."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True, "clip": clip},
    )
    path.write_bytes(b64decode(shot["data"]))


def _status(url: str) -> int:
    """HTTP status of a local URL, straight from the test server (no proxy)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, method="HEAD"), timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_page_works_offline(page, site, server, driver, screenshots):
    problems: list[str] = []
    _network_events(driver)  # drain what the previous page left
    driver.get_log("browser")
    url = f"{server}/{page}"
    driver.get(url)

    mathjax = driver.execute_async_script(WAIT_FOR_MATHJAX)
    _wait_for_images(driver)
    _full_page_png(driver, screenshots / f"{Path(page).stem}.png")
    found = driver.execute_script(INSPECT_PAGE)
    time.sleep(0.3)  # let late requests (lazily loaded fonts, MathJax parts) reach the log

    # 1. Nothing off the local host; nothing local missing.
    urls: dict[str, str] = {}
    for event in _network_events(driver):
        params = event["params"]
        if event["method"] == "Network.requestWillBeSent":
            request_url = urls[params["requestId"]] = params["request"]["url"]
            parts = urlsplit(request_url)
            if parts.scheme not in INNER_SCHEMES and parts.hostname not in LOCAL_HOSTS:
                problems.append(f"request off the local host: {request_url}")
        elif event["method"] == "Network.responseReceived":
            response = params["response"]
            if response["status"] >= 400:
                problems.append(f"HTTP {response['status']}: {response['url']}")
        elif event["method"] == "Network.loadingFailed" and not params.get("canceled"):
            where = urls.get(params["requestId"], f"request {params['requestId']}")
            problems.append(f"request failed ({params.get('errorText', '?')}): {where}")

    # 2. No console errors.
    for entry in driver.get_log("browser"):
        if entry["level"] == "SEVERE":
            problems.append(f"console error: {entry['message']}")

    # 3. Every image shows.
    for image in found["images"]:
        if not image["complete"] or image["width"] == 0:
            problems.append(f"image not loaded: {image['src']}")

    # 4. Every formula typeset by the local MathJax.
    if found["mathCount"]:
        if mathjax["error"]:
            problems.append(f"MathJax failed: {mathjax['error']}")
        elif not mathjax["version"]:
            problems.append(f"{found['mathCount']} formulas but MathJax did not start")
        for script in found["mathjax"]:
            if urlsplit(script).hostname not in LOCAL_HOSTS:
                problems.append(f"MathJax loaded from {script}")
    problems += [f"formula not typeset: {text!r}" for text in found["untypeset"]]
    problems += [f"TeX error: {text!r}" for text in found["texErrors"]]
    problems += [f"raw TeX left in the text: {text!r}" for text in found["rawTex"]]

    # 5. No table is cut off: wider than the output area that holds it (a reader would
    #    have to scroll sideways to see its last columns).
    cut_off = driver.execute_script(WIDE_TABLES)
    problems += [f"table wider than its column ({w} > {room} px): {head!r}"
                 for w, room, head in cut_off]

    # 6. Computed text reads like the prose around it (myst-nb would make it bold).
    bold = driver.execute_script(
        "return [...document.querySelectorAll('p span.pasted-text')].filter(s => "
        "getComputedStyle(s).fontWeight !== getComputedStyle(s.parentElement).fontWeight)"
        ".map(s => s.textContent.slice(0, 60));")
    problems += [f"computed text in another weight than its paragraph: {text!r}"
                 for text in bold]

    # 7. Internal links reach existing files.
    for link in sorted({urldefrag(href).url for href in found["links"]}):
        status = _status(link)
        if status >= 400:
            problems.append(f"link to a missing page ({status}): {link}")

    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


def test_pages_reference_no_remote_assets(site):
    """No script, stylesheet, image or font of a page comes from a URL off the site."""
    tag = re.compile(r"<(script|link|img|iframe|source|audio|video)\b[^>]*>", re.IGNORECASE)
    remote = re.compile(r"""\b(src|href)\s*=\s*["']?\s*(https?:)?//""", re.IGNORECASE)
    offenders = []
    for path in sorted(site.glob("*.html")):
        for match in tag.finditer(path.read_text(encoding="utf-8")):
            if match[1].lower() == "link" and not re.search(
                r"""rel\s*=\s*["']?[^"'>]*(stylesheet|preload|icon|modulepreload)""", match[0]
            ):
                continue  # a hyperlink-like <link> (rel=next, canonical, ...) loads nothing
            if remote.search(match[0]):
                offenders.append(f"{path.name}: {match[0][:160]}")
    assert not offenders, "remote assets:\n  " + "\n  ".join(offenders)


def test_pages_with_math_load_the_local_mathjax(site):
    """The MathJax script tag points into ``_static/mathjax/`` on every page with math."""
    pages = [p for p in sorted(site.glob("*.html")) if 'class="math' in p.read_text("utf-8")]
    for path in pages:
        html = path.read_text(encoding="utf-8")
        assert re.search(r'<script[^>]+src="_static/mathjax/tex-mml-chtml\.js', html), path.name
    assert (site / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()


def test_search_works_offline(site, server, driver):
    """The search page finds a word of the book (its index is a local script)."""
    driver.get(f"{server}/search.html?q=MobileNet")
    deadline = time.monotonic() + 30
    script = "return document.querySelectorAll('#search-results li, ul.search li').length;"
    while not driver.execute_script(script) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert driver.execute_script(script) > 0, "search for 'MobileNet' found nothing"
