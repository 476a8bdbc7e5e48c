"""int8 against float32 in the browser: onnxruntime-web, the runtime of the "Try it" page.

    python benchmarks/bench_web_int8.py [--onnx-dir results/int8/long-200k-early]
                                        [--calls 200] [--write]

`fer int8 RUN -o DIR` writes ``DIR/fp32.onnx`` and ``DIR/int8.onnx`` (static
quantisation, QDQ, calibrated on Training images) and times them in onnxruntime for
Python. This benchmark times the same two files where the book's demo runs them: in
headless Chromium, in onnxruntime-web's WebAssembly build (the files the page loads,
from ``node_modules/``, pinned in package-lock.json), on one thread as on the page
(threads need a cross-origin-isolated page, which static hosts do not give).

One page load, both models: both sessions are created and warmed up (20 calls each),
then called `--calls` times, taking turns call by call (a slower moment of the machine
costs both alike), one face a call (batch 1) and then a batch of 2 (the face and its
mirror, what the page runs), timed with ``performance.now()`` (the browser rounds it to
0.1 ms or so: the medians are what to read). The medians and interquartile ranges
print; ``--write`` stores them in ``DIR/web.json`` beside ``int8.json``. The logits of
the two models on one synthetic face are printed too, with their largest difference:
int8 must not merely run, it must compute the same network.

Only ratios mean something on a shared machine: run it on quiet cores (stop training
with ``kill -STOP``) and compare int8 with float32 in the same run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "node_modules" / "onnxruntime-web" / "dist"
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MODELS = ("fp32", "int8")
WEB_RECORD = "web.json"

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>int8 in the browser</title>
<script src="ort/ort.wasm.min.js"></script></head><body><script>
function synthetic(batch) {
  const face = new Float32Array(batch * 48 * 48);
  for (let i = 0; i < face.length; i++) face[i] = Math.sin(0.37 * i) * 0.8;
  return face;
}
async function timeBatch(sessions, batch, calls) {
  const feeds = {}, ms = {}, logits = {};
  for (const [name, s] of Object.entries(sessions)) {
    const x = new ort.Tensor("float32", synthetic(batch), [batch, 1, 48, 48]);
    feeds[name] = {[s.inputNames[0]]: x};
    for (let i = 0; i < 20; i++) logits[name] = (await s.run(feeds[name]))[s.outputNames[0]].data;
    logits[name] = Array.from(logits[name].slice(0, 7));
    ms[name] = [];
  }
  // The models take turns call by call, so that a slower moment of the machine costs
  // both the same: the ratio is what this measures.
  for (let i = 0; i < calls; i++) {
    for (const [name, s] of Object.entries(sessions)) {
      const t0 = performance.now();
      await s.run(feeds[name]);
      ms[name].push(performance.now() - t0);
    }
  }
  return {ms: ms, logits: logits};
}
window.runBenchmark = async function (calls) {
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;
  const sessions = {};
  for (const name of %s) {
    const bytes = await (await fetch(name + ".onnx")).arrayBuffer();
    sessions[name] = await ort.InferenceSession.create(bytes, {executionProviders: ["wasm"]});
  }
  const out = {version: ort.env.versions ? ort.env.versions.web : null, results: {}};
  for (const batch of [1, 2]) out.results[batch] = await timeBatch(sessions, batch, calls);
  return out;
};
</script></body></html>
"""


def stage_site(folder: Path, onnx_dir: Path) -> None:
    """The page, the runtime's three files and the two models, in `folder`."""
    (folder / "ort").mkdir()
    for name in RUNTIME_FILES:
        shutil.copy2(RUNTIME / name, folder / "ort" / name)
    for name in MODELS:
        shutil.copy2(onnx_dir / f"{name}.onnx", folder / f"{name}.onnx")
    (folder / "index.html").write_text(PAGE % json.dumps(list(MODELS)))


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's name
        pass


def serve(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    """`folder` over http on a free port of 127.0.0.1; (server, the page's address)."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/index.html"


def chromium():
    """Headless Debian Chromium through its own chromedriver (nothing downloaded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_script_timeout(600)
    return driver


def summarise(raw: dict) -> dict:
    """Medians and IQRs (ms) by model and batch, and the two models' largest logit gap."""
    import numpy as np

    out: dict = {"runtime": f"onnxruntime-web {raw['version']} (wasm, 1 thread)",
                 "latency_ms": {}, "latency_iqr_ms": {}}
    for batch, record in raw["results"].items():
        for name, ms in record["ms"].items():
            q1, median, q3 = np.percentile(ms, [25, 50, 75])
            out["latency_ms"].setdefault(name, {})[batch] = float(median)
            out["latency_iqr_ms"].setdefault(name, {})[batch] = float(q3 - q1)
    logits = {name: np.asarray(raw["results"]["1"]["logits"][name]) for name in MODELS}
    out["max_logit_gap"] = float(np.abs(logits["fp32"] - logits["int8"]).max())
    out["same_class"] = bool(logits["fp32"].argmax() == logits["int8"].argmax())
    out["calls"] = len(raw["results"]["1"]["ms"]["fp32"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx-dir", type=Path,
                        default=REPO / "results" / "int8" / "long-200k-early")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    missing = [p for p in [*(args.onnx_dir / f"{m}.onnx" for m in MODELS),
                           *(RUNTIME / f for f in RUNTIME_FILES)] if not p.exists()]
    if missing:
        raise SystemExit(f"bench_web_int8: {missing[0]} not found (the models: `fer int8 RUN "
                         f"-o {args.onnx_dir}`; the runtime: `npm ci`)")
    with tempfile.TemporaryDirectory() as tmp:
        stage_site(Path(tmp), args.onnx_dir)
        httpd, url = serve(Path(tmp))
        driver = chromium()
        try:
            driver.get(url)
            raw = driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "window.runBenchmark(arguments[0]).then(done, e => done({error: String(e)}));",
                args.calls)
        finally:
            driver.quit()
            httpd.shutdown()
    if "error" in raw:
        raise SystemExit(f"bench_web_int8: the page failed: {raw['error']}")
    summary = summarise(raw)
    for name in MODELS:
        cells = ", ".join(f"batch {b}: {ms:.2f} ms (IQR {summary['latency_iqr_ms'][name][b]:.2f})"
                          for b, ms in summary["latency_ms"][name].items())
        print(f"{name:5s} {cells}")
    for batch in summary["latency_ms"]["fp32"]:
        ratio = summary["latency_ms"]["fp32"][batch] / summary["latency_ms"]["int8"][batch]
        print(f"batch {batch}: int8 runs {ratio:.2f}x the speed of float32")
    print(f"largest logit gap fp32 - int8: {summary['max_logit_gap']:.3f}, "
          f"same class: {summary['same_class']}; {summary['runtime']}")
    if args.write:
        path = args.onnx_dir.parent / args.onnx_dir.name / WEB_RECORD
        path.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
