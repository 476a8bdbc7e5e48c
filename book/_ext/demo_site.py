"""The "Try it" page's files, written into the built site: the model, its manifest, the
page's script and style, and the browser runtime (onnxruntime-web, from npm).

On every HTML build (``builder-inited``) this extension writes ``_static/demo/`` in the
built site:

* ``model.onnx``: the homework submission, ``fer_lib.submission(225_000)``, exported by
  :func:`fer_lib.deploy.export_onnx_at_precision` from the committed weights in
  ``results/`` (no data set needed): int8 weights as int8 tensors with their float16
  scales, dequantized in the graph to exactly the weights of fer_lib's int8 model;
* ``manifest.json``: run, family, precision, the bytes of the submitted ``.npz`` and of
  ``model.onnx``, class names, pixel normalisation, test-time augmentation, the runtime;
* ``try_it.js`` and ``try_it.css`` from ``book/_demo/``;
* ``ort/``: the three files of onnxruntime-web the page loads (the wasm-only script, its
  module and its WebAssembly binary), copied from ``node_modules/`` at the repository
  root, which ``make book`` fills with ``npm ci`` (version pinned in package.json and
  package-lock.json). Without them the manifest says ``"runtime": null`` and the page
  says that the demo needs npm to be built; the book still builds.

Nothing is generated in the repository and nothing is fetched from a CDN. The LaTeX
(PDF) build is left alone. Registered in ``_config.yml`` under ``sphinx:
local_extensions``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
PAGE_ASSETS = REPO / "book" / "_demo"
RUNTIME_PACKAGE = REPO / "node_modules" / "onnxruntime-web"
# What the page loads: the wasm-only build (a classic script defining `ort`), the module
# it imports at start-up, and the WebAssembly binary that module instantiates.
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs",
                 "ort-wasm-simd-threaded.wasm")
SITE_FOLDER = ("_static", "demo")
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"


def write_model(target: Path) -> dict[str, Any]:
    """Export the submission to ``target/model.onnx``; return the manifest's model part."""
    import fer_lib
    from fer_lib.data import CLASS_NAMES, IMAGE_SIZE
    from fer_lib.deploy import export_onnx_at_precision
    from fer_lib.evaluate import PIXEL_MEAN, PIXEL_STD
    from fer_lib.quantize import STRONG_BUDGET

    submission = fer_lib.submission(STRONG_BUDGET)
    path = export_onnx_at_precision(submission.result().model(), target / MODEL_FILE,
                                    submission.precision)
    data = path.read_bytes()
    return {
        "run": submission.run,
        "family": submission.family,
        "precision": submission.precision,
        "budget": submission.budget,
        "bytes": submission.bytes,  # the submitted .npz, as the book reports it
        "params": submission.params,
        "private_acc": submission.private_acc,
        "model": MODEL_FILE,
        "onnx_bytes": len(data),
        "onnx_sha256": hashlib.sha256(data).hexdigest(),
        "class_names": list(CLASS_NAMES),
        "image_size": IMAGE_SIZE,
        "input": {"name": "x", "shape": ["batch", 1, IMAGE_SIZE, IMAGE_SIZE]},
        "output": "logits",
        "pixel_mean": PIXEL_MEAN,
        "pixel_std": PIXEL_STD,
        # fer_lib.evaluate.predict_views: the logits of the image and its mirror, averaged.
        "tta": "mirror",
    }


def copy_runtime(target: Path) -> dict[str, Any] | None:
    """Copy onnxruntime-web's files into ``target/ort/``; None when npm never ran."""
    dist = RUNTIME_PACKAGE / "dist"
    if not all((dist / name).is_file() for name in RUNTIME_FILES):
        return None
    version = json.loads((RUNTIME_PACKAGE / "package.json").read_text())["version"]
    folder = target / "ort"
    folder.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_FILES:
        _copy_if_changed(dist / name, folder / name)
    return {"package": "onnxruntime-web", "version": version, "path": "ort/",
            "script": RUNTIME_FILES[0]}


def _copy_if_changed(source: Path, destination: Path) -> None:
    if destination.exists():
        done, stat = destination.stat(), source.stat()
        if done.st_size == stat.st_size and done.st_mtime >= stat.st_mtime:
            return
    shutil.copy2(source, destination)


def write_demo(target: Path) -> dict[str, Any]:
    """Everything the page needs, in `target`; returns the manifest written there."""
    target.mkdir(parents=True, exist_ok=True)
    for asset in sorted(PAGE_ASSETS.iterdir()):
        if asset.is_file():
            _copy_if_changed(asset, target / asset.name)
    runtime = copy_runtime(target)
    if runtime is None and (target / "ort").exists():
        shutil.rmtree(target / "ort")  # a runtime left by an earlier build: not this one's
    manifest = write_model(target) | {"runtime": runtime}
    (target / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def build_demo(app: Sphinx) -> None:
    """``builder-inited``: write ``_static/demo/`` of an HTML build."""
    if getattr(app.builder, "format", None) != "html":
        return
    manifest = write_demo(Path(app.outdir).joinpath(*SITE_FOLDER))
    runtime = manifest["runtime"]
    where = (f"onnxruntime-web {runtime['version']}" if runtime else
             "no onnxruntime-web in node_modules/ (run `npm ci`, or `make book` with npm): "
             "the page will say that the demo needs npm")
    logger.info(f"demo_site: {manifest['run']} at {manifest['precision']}, "
                f"{manifest['onnx_bytes']:,} B of ONNX; {where}")


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", build_demo)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
