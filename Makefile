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

NOTEBOOKS := $(wildcard book/*.ipynb)
NBVAL_CFG := $(wildcard book/nbval-sanitize.cfg)

.PHONY: help venv test lint book pdf clean

help:
	@echo "make book   set up $(VENV) and build the HTML book (book/_build/html/index.html)"
	@echo "make test   set up $(VENV), lint, run the tests (and the notebooks, if any)"
	@echo "make pdf | lint | clean | venv"

venv: $(VENV)/.installed

# The stamp makes set-up idempotent; editing pyproject.toml re-runs it.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	-$(PY) -m pip install --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH)" || $(PY) -m pip install "torch>=2.4"
	$(PY) -m pip install -e ".[book,test]"
	touch $@

test: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q
ifneq ($(and $(NOTEBOOKS),$(NBVAL_CFG)),)
	$(VENV)/bin/pytest -q --nbval $(NOTEBOOKS) --nbval-sanitize-with $(NBVAL_CFG)
endif

lint: venv
	$(VENV)/bin/ruff check .

# Strict build: any warning fails it. Chapters execute from their .md sources (cached
# by jupyter-cache, so only changed chapters re-run); output in book/_build/html.
# The execution cache is keyed on the notebooks' code, not on the results they read:
# drop it when anything in results/ is newer, so the HTML never shows stale numbers.
JB_CACHE := book/_build/.jupyter_cache

book: venv
	@if [ -d $(JB_CACHE) ] && [ -n "$$(find results -newer $(JB_CACHE) -print -quit)" ]; then \
	  echo "results/ changed: clearing the execution cache"; rm -rf $(JB_CACHE); fi
	$(VENV)/bin/jupyter-book build book/ -W -n --keep-going --path-output book

# PDF via XeLaTeX (the report questions are in Traditional Chinese): book/_build/latex/
# fer-compression.pdf. Needs, on Debian or Ubuntu: apt-get install latexmk
# texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended tex-gyre
# texlive-xetex texlive-lang-chinese fonts-freefont-otf fonts-noto-cjk (.ci/run does).
pdf: venv
	$(VENV)/bin/jupyter-book build book/ --builder pdflatex --path-output book

clean:
	rm -rf book/_build .pytest_cache .ruff_cache
