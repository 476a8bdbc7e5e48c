"""nbval settings for the committed notebooks, so `pytest --nbval` works as typed.

The sanitizers (book/nbval-sanitize.cfg) replace volatile text before outputs are
compared, and the notebooks run in this environment's kernel, whatever kernel name the
notebook's metadata carries.

The tests in tests/ point ``$FER_RUNS_DIR`` at a tmp folder for the whole session, so
that no test leaves a checkpoint in the repository's runs/. A notebook's kernel inherits
the environment it starts in, and the book reads runs/ (the committed checkpoint of a run
longer than a session: how far it has come, what is left to pay); so before a notebook's
kernel starts, the variable is set back to what it was when pytest started.
"""

import os
from pathlib import Path

import pytest

ISOLATED_BY_TESTS = ("FER_RUNS_DIR",)
_before_session: dict[str, str | None] = {}


DATA_MARKER = ("data: needs the real FER2013 (skips without it) or checks what it changes; "
               "CI's second world runs only these (make test-data)")


def pytest_configure(config):
    if hasattr(config, "addinivalue_line") and not any(
            line.startswith("data:") for line in config.getini("markers")):
        config.addinivalue_line("markers", DATA_MARKER)
    option = config.option
    if getattr(option, "nbval_sanitize_with", "unset") is None:
        option.nbval_sanitize_with = str(Path(__file__).with_name("nbval-sanitize.cfg"))
    if hasattr(option, "nbval_current_env"):
        option.nbval_current_env = True
    _before_session.update({name: os.environ.get(name) for name in ISOLATED_BY_TESTS})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before a notebook cell (and so before its kernel starts): the variables the test
    fixtures redirected, as they were before the session."""
    if item.path.suffix != ".ipynb":
        return
    for name, value in _before_session.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def pytest_collection_modifyitems(config, items):
    """Mark the notebooks' cells `data`: with the data set the chapters show the sample
    faces, and nbval must still find the committed outputs (made without it), so CI's
    second world runs nbval again (make test-data)."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.data)
