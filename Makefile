# A fresh machine needs two commands: `make book` and `make test` (see README.md).
VENV ?= .venv
PY = $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# Torch first, so `pip install -e` finds it satisfied: on the build machines this pin
# is a CPU wheel on local disk (any other spelling downloads a multi-GB CUDA build).
# Where it does not exist, fall back to any torch>=2.4 (what pyproject.toml asks).
TORCH ?= torch==2.13.0

# Data: the shared development copy beside the repo when it exists, else fer_lib
# looks in data/ (see README.md). An explicit FER2013_PATH always wins.
FER2013_PATH ?= $(abspath $(wildcard ../shared/data/fer2013.zip))
ifneq ($(strip $(FER2013_PATH)),)
export FER2013_PATH
endif

.PHONY: help venv test test-all test-data test-rescore lint book pdf clean notebooks browser-test serve

help:
	@echo "make book   set up $(VENV) and build the HTML book (book/_build/html/index.html)"
	@echo "make test   set up $(VENV), lint, run the fast tests and nbval over the notebooks"
	@echo "make test-all  the same with the slow tests too (training, Ray, the whole data set)"
	@echo "make test-data  with FER2013: the tests that need it, nbval with it (CI's second world)"
	@echo "make test-rescore  with FER2013: every stored model scored again on every image (about 1 h)"
	@echo "make notebooks  re-execute the chapters into book/*.ipynb (CHAPTERS=\"data q1_architecture\")"
	@echo "make browser-test  build the book, open every page in headless Chromium (offline checks)"
	@echo "make serve  serve the built book on http://127.0.0.1:8000 (the Try it page needs it)"
	@echo "make pdf | lint | clean | venv"

venv: $(VENV)/.installed

# The stamp makes set-up idempotent; editing pyproject.toml re-runs it.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	-$(PY) -m pip install --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH)" || $(PY) -m pip install "torch>=2.4"
	$(PY) -m pip install -e ".[book,test,cluster]"
	touch $@

# What a reader types, in one run: the tests in tests/ and nbval over the committed
# notebooks in book/ (pyproject's testpaths; book/conftest.py adds the sanitizers),
# without the tests marked slow (what trains more than a few epochs or twice to compare,
# starts a Ray cluster, builds a book or reads the whole data set): meant to take at most
# 5 minutes on two idle cores (benchmarks/bench_feedback.py times it). `make test-all`
# runs every test, slow ones included; CI runs it (.ci/run). A -m on the command line
# replaces pyproject's addopts -m, so both say "not browser" again (make browser-test).
#
# The fast tests run in parallel, one worker per core (pytest-xdist: `-n auto`), each file
# on one worker (`--dist loadfile`: a notebook's cells share one kernel, in order), and
# one thread per worker (OMP_NUM_THREADS=1): two workers of two threads each on two cores
# spent more time waiting than working. Measured on 2 idle cores: 455 s in one process,
# 385 s on two workers of two threads, 234 s on two workers of one thread each. The slow
# tests (training, Ray clusters, builds) then run in one process, as before.
FAST_TESTS = not slow and not browser
PARALLEL = OMP_NUM_THREADS=1 $(VENV)/bin/pytest -n auto --dist loadfile
test: venv
	$(VENV)/bin/ruff check .
	$(PARALLEL) -q --nbval -m "$(FAST_TESTS)"

test-all: test
	$(VENV)/bin/pytest -q -m "slow and not browser and not rescore"

# Only what the data set changes (marker `data`, set in tests/conftest.py and
# book/conftest.py): the tests that skip without FER2013, and nbval over the notebooks,
# which must match with the data as without it. CI's second world (.ci/run). Both on one
# worker per core, in two runs: the tests spread case by case (`--dist load`: one case
# per stored model), then the notebooks file by file (a notebook's cells share one kernel
# and run in order). Every stored model is checked against its stored outputs on a
# sample of images, and the handed-in folder is scored on every test image.
# `make test-rescore` scores every stored model again on every image at every precision
# (about two hours of one core, an hour on two: after changing how fer_lib scores or
# quantises).
DATA_TESTS = data and not browser and not rescore
test-data: venv
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -n auto --dist load -q -m "$(DATA_TESTS)" tests
	$(PARALLEL) -q --nbval -m "$(DATA_TESTS)" book

test-rescore: venv
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -n auto --dist load -q -m rescore tests

# Re-execute the chapters into their committed .ipynb (after changing a chapter or
# results/): without the data set, faces stripped; see scripts/execute_notebooks.py.
notebooks: venv
	$(PY) scripts/execute_notebooks.py $(CHAPTERS)

lint: venv
	$(VENV)/bin/ruff check .

# Strict build: any warning fails it. Chapters execute from their .md sources (cached
# by jupyter-cache, so only changed chapters re-run); output in book/_build/html, the
# cache in book/_build/.jupyter_cache. No --path-output: jupyter-book's default is the
# folder of the _config.yml it finds, book/ (book/_config.yml links to ../_config.yml),
# so a plain `jupyter-book build book/` builds the same site from the same cache. The
# cache is keyed on the notebooks' code only: book/_ext/book_inputs.py re-executes and
# re-reads every chapter when results/ or the data set's presence changed.
# The "Try it" page runs the model in onnxruntime-web, pinned in package-lock.json: with
# npm, `npm ci` installs it (only when node_modules/ is older than the lock file) and
# book/_ext/demo_site.py copies its files into the site. Without npm the book still
# builds, and that page says the demo needs npm.
book: venv
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "npm not found: the Try it page's demo will not be built (it needs npm)"; \
	elif [ ! package-lock.json -ot node_modules/.package-lock.json ]; then \
	  echo "npm ci --ignore-scripts --no-audit --no-fund"; \
	  npm ci --ignore-scripts --no-audit --no-fund; \
	fi
	$(VENV)/bin/jupyter-book build book/ -W -n --keep-going

# PDF via XeLaTeX (the report questions are in Traditional Chinese): book/_build/latex/
# fer-compression.pdf. Needs, on Debian or Ubuntu: apt-get install latexmk
# texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended tex-gyre
# texlive-xetex texlive-lang-chinese fonts-freefont-otf fonts-noto-cjk (.ci/run does).
# A LaTeX error stops XeLaTeX (-halt-on-error), so latexmk and the build fail; then
# scripts/check_pdf.py fails on an error in the log, a blank page, or a page over 80 %
# empty that does not end a chapter (poppler-utils).
pdf: venv
	LATEXOPTS="-interaction=nonstopmode -halt-on-error" \
	  $(VENV)/bin/jupyter-book build book/ --builder pdflatex
	$(PY) scripts/check_pdf.py book/_build/latex/fer-compression.pdf \
	  --log book/_build/latex/fer-compression.log

# Every build output: book/_build (HTML, PDF, execution cache, screenshots), and _build
# at the root, where builds went before book/_config.yml existed.
clean:
	rm -rf book/_build _build .pytest_cache .ruff_cache

# The built HTML in headless Chromium (Debian: apt-get install chromium chromium-driver):
# every page opened from a local server must reach no other host, log no console error,
# show its images, have its formulas typeset by the bundled MathJax and no dead local
# link. Full-page screenshots land in book/_build/screenshots/.
browser-test: book
	$(VENV)/bin/pytest -q -m browser tests/browser

# The built book over http on this machine only: the Try it page reads its model with
# fetch(), which a browser refuses on a page opened from disk (file://). Ctrl-C stops it.
serve:
	@test -f book/_build/html/index.html || \
	  { echo "no built book in book/_build/html: run make book first"; exit 1; }
	@echo "open http://127.0.0.1:8000/try_it.html (Ctrl-C stops the server)"
	python3 -m http.server --directory book/_build/html --bind 127.0.0.1 8000
