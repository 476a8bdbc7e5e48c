"""Serve MathJax from the built site and drop CDN-only assets: the HTML book works offline.

Sphinx loads MathJax 3 from a CDN (``mathjax_path`` defaults to jsDelivr), so a reader
without a network sees raw ``$...$``. The PyPI package ``django-static-mathjax`` is
MathJax 3.2.2 packaged for pip (its files only; Django is not needed): this extension
copies the part of its ``es5/`` tree that the pages use into ``_static/mathjax/`` and
points ``mathjax_path`` there. ``mathjax3_config`` (set by myst-parser for dollarmath)
is left as it is.

It also removes the other references to CDNs that jupyter-book's extensions add:

* sphinx-thebe's assets (``THEBE_JS_URL`` on unpkg.com, a Binder config). They only act
  when a thebe launch button is clicked, and the book has none (``launch_buttons.thebe``
  is off), so they are dropped unless thebe is switched on;
* myst-nb's ipywidgets loaders (require.js and the widget manager from CDNs), added to a
  page whose notebook carries widget state. The book has no widgets; ``nb_ipywidgets_js``
  is emptied so that a page with some would still reach no CDN (its widgets would not
  render: serve a local widget manager first if the book ever needs them).

Registered in ``_config.yml`` under ``sphinx: local_extensions``.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

PACKAGE = "django-static-mathjax"
# The combined component Sphinx loads by default (TeX and MathML input, CommonHTML output,
# the contextual menu, assistive MathML), under _static/ of the built site.
COMPONENT = "tex-mml-chtml.js"
MATHJAX_PATH = f"mathjax/{COMPONENT}"
# What of es5/ the pages load, relative to es5/ (MathJax finds them beside the component):
NEEDED = (
    COMPONENT,
    # the CommonHTML fonts, fetched as a page first needs each one;
    "output/chtml/fonts/woff-v2",
    # TeX packages that the autoload extension fetches when a formula uses one of their
    # macros (\color, \cancel, \boldsymbol, \mathtip, ...);
    "input/tex/extensions",
    # what the contextual menu (right click on a formula) loads when a reader picks it:
    # the accessibility explorer and speech (a11y/, sre/), and the SVG renderer.
    "a11y",
    "sre",
    "output/svg.js",
    "output/svg/fonts",
)


def mathjax_es5() -> Path:
    """The ``es5/`` folder of the installed MathJax, or a clear error if it is missing."""
    spec = importlib.util.find_spec("mathjax")
    for root in (spec.submodule_search_locations or []) if spec else []:
        es5 = Path(root) / "static" / "mathjax" / "es5"
        if (es5 / COMPONENT).is_file():
            return es5
    raise ExtensionError(
        f"offline_mathjax: MathJax not found. The HTML book serves MathJax itself (no CDN) "
        f"from the pip package {PACKAGE!r}, which is not installed in this environment. "
        f'Install the book extra: `make venv`, or `pip install -e ".[book]"`.'
    )


def _thebe_in_use(app: Sphinx) -> bool:
    launch = (app.config.html_theme_options or {}).get("launch_buttons") or {}
    thebe_config = getattr(app.config, "thebe_config", None) or {}
    return bool(launch.get("thebe")) or bool(thebe_config.get("always_load"))


def _is_html(app: Sphinx) -> bool:
    return getattr(app.builder, "format", None) == "html"


def use_local_mathjax(app: Sphinx, config: Any) -> None:
    """``config-inited``: MathJax from ``_static/``, no ipywidgets loaders from CDNs.

    A ``mathjax_path`` that is a URL (Sphinx's default is jsDelivr's) becomes the local
    copy; a local path set on purpose is kept.
    """
    if not config.mathjax_path or "://" in config.mathjax_path:
        config.mathjax_path = MATHJAX_PATH
    if hasattr(config, "nb_ipywidgets_js"):
        config.nb_ipywidgets_js = {}


def copy_mathjax(app: Sphinx) -> None:
    """``builder-inited``: copy the needed MathJax files into ``_static/mathjax/``.

    Copied before the pages are written, so Sphinx adds a checksum to the script URL.
    Files already there and unchanged are not copied again.
    """
    if not _is_html(app):
        return
    es5 = mathjax_es5()
    target = Path(app.outdir) / "_static" / "mathjax"
    copied = 0
    for relative in NEEDED:
        source = es5 / relative
        if not source.exists():
            raise ExtensionError(f"offline_mathjax: {source} is missing from {PACKAGE}")
        files = [source] if source.is_file() else sorted(source.rglob("*"))
        for path in files:
            if path.is_dir():
                continue
            destination = target / path.relative_to(es5)
            stat = path.stat()
            if destination.exists():
                done = destination.stat()
                if done.st_size == stat.st_size and done.st_mtime >= stat.st_mtime:
                    continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
            copied += 1
    logger.info(f"offline_mathjax: MathJax from {es5} ({copied} files copied)")


def drop_thebe_config(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """``doctree-resolved`` (after sphinx-thebe): remove its unused Binder config."""
    if not _is_html(app) or _thebe_in_use(app):
        return
    for node in list(doctree.findall(nodes.raw)):
        text = node.astext()
        if "text/x-thebe-config" in text or text.startswith("<script>kernelName ="):
            node.parent.remove(node)


def drop_thebe_assets(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    """``html-page-context``: no sphinx-thebe script (its THEBE_JS_URL is on unpkg.com)."""
    if _thebe_in_use(app):
        return

    def thebe(asset: Any) -> bool:
        name = str(getattr(asset, "filename", asset) or "")
        body = str(getattr(asset, "attributes", {}).get("body", ""))
        return "sphinx-thebe" in name or "THEBE_JS_URL" in body

    for key in ("script_files", "css_files"):
        if key in context:  # in place: the builder restores these lists after the page
            context[key][:] = [asset for asset in context[key] if not thebe(asset)]


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", use_local_mathjax)
    app.connect("builder-inited", copy_mathjax)
    app.connect("doctree-resolved", drop_thebe_config, priority=900)
    app.connect("html-page-context", drop_thebe_assets, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
