"""nbval settings for the committed notebooks, so `pytest --nbval` works as typed.

The sanitizers (book/nbval-sanitize.cfg) replace volatile text before outputs are
compared, and the notebooks run in this environment's kernel, whatever kernel name the
notebook's metadata carries.
"""

from pathlib import Path


def pytest_configure(config):
    option = config.option
    if getattr(option, "nbval_sanitize_with", "unset") is None:
        option.nbval_sanitize_with = str(Path(__file__).with_name("nbval-sanitize.cfg"))
    if hasattr(option, "nbval_current_env"):
        option.nbval_current_env = True
