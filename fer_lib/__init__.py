"""fer_lib: model compression on FER2013, the library behind the HW8 teaching book.

Data flows one way: data -> models/train (+distill/prune) -> quantize/evaluate ->
catalogue/store/experiments -> results/ -> plots -> book. Lower modules never import
higher ones (tests/test_codebase.py checks it).
"""

__version__ = "0.1.0"

__all__ = ["submission"]


def __getattr__(name: str):
    """`fer_lib.submission` without importing torch and pandas at `import fer_lib`."""
    if name == "submission":
        from .report import submission

        return submission
    raise AttributeError(f"module 'fer_lib' has no attribute {name!r}")
