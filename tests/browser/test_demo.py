"""The "Try it" page runs the submission in headless Chromium, offline, as fer_lib does.

A reader's path, with pictures the test makes itself (grey gradients and patterns written
by Pillow to a temporary folder, never a FER2013 face): each goes through the page's own
file input; the page's 48 x 48 input, logits and probabilities are read from the data
attributes of ``#fer-demo`` and compared with onnxruntime in Python on the same ONNX file
and with fer_lib's own model at the submitted precision (max absolute difference of the
probabilities at most 1e-3, same top class). Bad input (a file that is not an image, a
tiny image, a denied camera) gives a clear message and the demo keeps working. The page
reaches no host but the local server. Screenshots: ``book/_build/screenshots/try_it-demo
*.png``; the measured numbers: ``book/_build/screenshots/try_it-demo.json``.

Run with ``make browser-test`` or ``pytest -m browser tests/browser/test_demo.py``.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

PAGE = "try_it.html"
TOLERANCE = 1e-3
SIDE = 48


# --------------------------------------------------------------------- pictures
def pattern_48() -> np.ndarray:
    """A 48 x 48 grey pattern, not symmetric left to right (so the mirror matters)."""
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    image = (x * 4 + y * 2) % 256
    image[10:20, 5:15] = 255
    image[30:44, 28:34] = 20
    return image.astype(np.uint8)


def colour_gradient(width: int = 120, height: int = 80) -> np.ndarray:
    """RGB uint8 (height, width, 3): three different gradients, one per channel."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // (width - 1), y * 255 // (height - 1),
                     (x + 2 * y) % 256], axis=-1).astype(np.uint8)


def grey_like_pillow(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.uint8)


def area_resize(grey: np.ndarray, x: int, y: int, size: int) -> np.ndarray:
    """The page's resampling: each output pixel averages the part of the crop it covers."""
    edges = np.arange(SIDE + 1) * size / SIDE
    cells = np.arange(size)
    weights = np.clip(np.minimum(edges[1:, None], cells + 1)
                      - np.maximum(edges[:-1, None], cells), 0, None) * SIDE / size
    crop = grey[y:y + size, x:x + size].astype(np.float64)
    return np.clip(np.rint(weights @ crop @ weights.T), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("demo-pictures")
    paths = {"pattern": folder / "pattern-48.png", "colour": folder / "gradient-120x80.png",
             "tiny": folder / "tiny-20x30.png", "text": folder / "notes.png"}
    Image.fromarray(pattern_48()).save(paths["pattern"])
    Image.fromarray(colour_gradient()).save(paths["colour"])
    Image.fromarray(np.full((30, 20), 128, np.uint8)).save(paths["tiny"])
    paths["text"].write_text("This file is called .png but holds text, not an image.\n")
    return paths


# --------------------------------------------------------------------- references
def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


@pytest.fixture(scope="module")
def references(site):
    """Python's two answers for a 48 x 48 picture: onnxruntime on the site's model.onnx,
    and fer_lib's model at the manifest's precision (both image + mirror, averaged)."""
    import fer_lib
    from fer_lib.deploy import onnx_predict, onnx_session
    from fer_lib.evaluate import PIXEL_MEAN, PIXEL_STD, predict_views

    manifest = json.loads((site / "_static/demo/manifest.json").read_text())
    submission = fer_lib.submission(manifest["budget"])
    assert (submission.run, submission.precision, submission.bytes) == (
        manifest["run"], manifest["precision"], manifest["bytes"])
    session = onnx_session(site / "_static/demo/model.onnx", threads=1)
    model = submission.model()

    def onnxruntime(pixels: np.ndarray) -> np.ndarray:
        x = ((pixels.astype(np.float32) - PIXEL_MEAN) / PIXEL_STD)[None, None]
        both = onnx_predict(session, np.concatenate([x, x[..., ::-1]]))
        return softmax(both.mean(axis=0, dtype=np.float32).astype(np.float64))

    def fer_lib_model(pixels: np.ndarray) -> np.ndarray:
        plain, mirrored = predict_views(model, pixels[None])
        return softmax(((plain + mirrored) / 2)[0].astype(np.float64))

    return {"onnxruntime": onnxruntime, "fer_lib": fer_lib_model, "manifest": manifest}


# --------------------------------------------------------------------- the page
def demo_data(driver) -> dict:
    return driver.execute_script(
        "const root = document.getElementById('fer-demo');"
        "const message = root.querySelector('.fer-demo-message');"
        "return Object.assign({}, root.dataset, {message: message ? message.textContent : '',"
        " kind: message ? message.dataset.kind : ''});")


def wait_for(driver, condition, what: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        data = demo_data(driver)
        if condition(data):
            return data
        time.sleep(0.1)
    pytest.fail(f"the demo never {what}: {demo_data(driver)}")


def off_host_requests(driver) -> list[str]:
    """Requests to hosts other than the local server, since the log was last read."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return [url for url in urls if urlsplit(url).scheme not in ("data", "blob", "about")
            and urlsplit(url).hostname not in ("127.0.0.1", "localhost")]


def feed(driver, path: Path, *, expect_run: bool = True) -> dict:
    """Pick `path` in the page's file input, as a reader does; wait for its answer."""
    before = demo_data(driver)
    driver.find_element("css selector", "#fer-demo input[type=file]").send_keys(str(path))
    if expect_run:
        return wait_for(driver, lambda d: d.get("runs") != before.get("runs")
                        and d.get("source") == path.name, f"ran on {path.name}")
    return wait_for(driver, lambda d: d["kind"] == "error" and path.name in d["message"],
                    f"refused {path.name}")


def page_answer(data: dict) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.frombuffer(base64.b64decode(data["input"]), np.uint8).reshape(SIDE, SIDE).copy()
    return pixels, np.array(json.loads(data["probabilities"]))


def compare(data: dict, references) -> dict:
    """Max |difference| of the page's probabilities with both references; same top class."""
    pixels, page = page_answer(data)
    ort, lib = references["onnxruntime"](pixels), references["fer_lib"](pixels)
    diffs = {"page_vs_onnxruntime": float(np.abs(page - ort).max()),
             "page_vs_fer_lib": float(np.abs(page - lib).max()),
             "onnxruntime_vs_fer_lib": float(np.abs(ort - lib).max())}
    assert max(diffs.values()) <= TOLERANCE, diffs
    names = references["manifest"]["class_names"]
    assert data["top"] == names[int(page.argmax())] == names[int(ort.argmax())] \
        == names[int(lib.argmax())]
    return diffs


def png(driver, path: Path, selector: str | None = None) -> None:
    """A screenshot of the whole page, or of the element `selector`, beyond the window."""
    if selector is None:
        metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"]}
    else:
        clip = driver.execute_script(
            "const box = document.querySelector(arguments[0]).getBoundingClientRect();"
            "return {x: box.left + window.scrollX, y: box.top + window.scrollY,"
            " width: box.width, height: box.height};", selector)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


@pytest.fixture
def demo(site, server, driver):
    """The page, loaded afresh, with its model ready (skips if built without npm)."""
    manifest = json.loads((site / "_static/demo/manifest.json").read_text())
    driver.get_log("performance")  # drain what earlier pages left
    driver.get_log("browser")
    driver.get(f"{server}/{PAGE}")
    if manifest["runtime"] is None:
        data = wait_for(driver, lambda d: d.get("state") != "loading", "settled")
        assert data["state"] == "no-runtime" and "npm" in data["message"]
        pytest.skip("book built without npm: the page says the demo needs npm")
    wait_for(driver, lambda d: d.get("state") != "loading", "loaded its model")
    assert demo_data(driver)["state"] == "ready", demo_data(driver)
    yield driver
    assert not off_host_requests(driver), "the demo reached a host other than the local one"
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


# --------------------------------------------------------------------- tests
def test_page_matches_onnxruntime_and_fer_lib(demo, pictures, references, screenshots):
    data = feed(demo, pictures["pattern"])
    pixels, _ = page_answer(data)
    assert data["crop"] == "0,0,48"  # a 48 x 48 picture: the whole of it, unchanged
    assert np.array_equal(pixels, pattern_48())
    diffs = compare(data, references)
    png(demo, screenshots / "try_it-demo.png")
    png(demo, screenshots / "try_it-demo-widget.png", "#fer-demo")
    median_ms = float(demo.find_element("css selector", ".fer-demo-facts").text
                      .split("Time per inference")[1].split("ms")[0])
    manifest = references["manifest"]
    (screenshots / "try_it-demo.json").write_text(json.dumps({
        "run": manifest["run"], "precision": manifest["precision"],
        "npz_bytes": manifest["bytes"], "onnx_bytes": manifest["onnx_bytes"],
        "runtime": manifest["runtime"], "top": data["top"], "max_abs_diff": diffs,
        "ms_last_run": float(data["ms"]), "ms_median_shown": median_ms}, indent=1) + "\n")


def test_grey_crop_and_resize_follow_the_page_description(demo, pictures, references):
    data = feed(demo, pictures["colour"])
    grey = grey_like_pillow(colour_gradient())
    assert data["crop"] == "20,0,80"  # centred square, the shorter side
    pixels, _ = page_answer(data)
    assert np.abs(pixels.astype(int) - area_resize(grey, 20, 0, 80)).max() <= 1
    compare(data, references)
    # Moving the crop with the keyboard re-runs the model on the new square.
    view = demo.find_element("css selector", "#fer-demo canvas.fer-demo-view")
    runs = data["runs"]
    view.send_keys("\ue012" * 3)  # ArrowLeft three times: 3 pixels each (1/24 of 80)
    moved = wait_for(demo, lambda d: d["crop"] == "11,0,80" and d["runs"] != runs,
                     "followed the arrow keys")
    pixels, _ = page_answer(moved)
    assert np.abs(pixels.astype(int) - area_resize(grey, 11, 0, 80)).max() <= 1
    compare(moved, references)


def test_bad_files_give_a_message_and_the_demo_keeps_working(demo, pictures, references):
    good = feed(demo, pictures["pattern"])
    refused = feed(demo, pictures["text"], expect_run=False)
    assert "not an image" in refused["message"]
    assert (refused["runs"], refused["source"]) == (good["runs"], good["source"])
    refused = feed(demo, pictures["tiny"], expect_run=False)
    assert "20 × 30" in refused["message"] and "48 × 48" in refused["message"]
    assert refused["runs"] == good["runs"]
    again = feed(demo, pictures["colour"])
    assert again["kind"] == "info"
    compare(again, references)


def test_denied_camera_gives_a_message_and_the_demo_keeps_working(demo, pictures, references):
    # What a browser answers when the reader refuses (headless Chromium has no camera).
    demo.execute_script("""
        const deny = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
        if (navigator.mediaDevices) navigator.mediaDevices.getUserMedia = deny;
        else Object.defineProperty(navigator, 'mediaDevices', {value: {getUserMedia: deny}});""")
    demo.find_element("css selector", "#fer-demo button").click()
    data = wait_for(demo, lambda d: d["kind"] == "error", "reported the denied camera")
    assert "denied" in data["message"]
    assert demo.find_element("css selector", "#fer-demo button").is_enabled()
    compare(feed(demo, pictures["pattern"]), references)


@pytest.fixture(scope="module")
def camera_driver(driver):
    """A second headless Chromium whose camera is Chromium's fake device (a synthetic test
    pattern, no face) and whose permission prompt answers yes: the reader who allows it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--no-first-run", "--no-proxy-server",
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                     "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                     "--window-size=1280,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    browser.set_script_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


def test_camera_runs_live_after_the_reader_allows_it(site, server, camera_driver, references,
                                                    screenshots):
    manifest = references["manifest"]
    if manifest["runtime"] is None:
        pytest.skip("book built without npm")
    browser = camera_driver
    browser.get(f"{server}/{PAGE}")
    wait_for(browser, lambda d: d.get("state") == "ready", "loaded its model")
    assert demo_data(browser).get("source") is None  # no camera until the button is pressed
    browser.find_element("css selector", "#fer-demo button").click()
    first = wait_for(browser, lambda d: d.get("source") == "camera", "showed the camera")
    later = wait_for(browser, lambda d: int(d["runs"]) >= int(first["runs"]) + 3,
                     "kept running on new frames")
    assert "Camera on" in later["message"]
    compare(later, references)
    png(browser, screenshots / "try_it-demo-camera.png", "#fer-demo")
    browser.find_element("css selector", "#fer-demo button").click()
    wait_for(browser, lambda d: "Camera off" in d["message"], "turned the camera off")
    time.sleep(0.5)  # a run already under way may still report
    stopped = demo_data(browser)
    time.sleep(1)
    assert demo_data(browser)["runs"] == stopped["runs"]  # no new frames once it is off
    assert browser.execute_script(
        "return document.querySelector('#fer-demo video').srcObject") is None
    assert not off_host_requests(browser)
