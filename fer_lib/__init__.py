"""fer_lib: model compression on FER2013, the library behind the HW8 teaching book.

Data flows one way: data -> models/train (+distill/prune) -> quantize/evaluate ->
experiments -> results/ -> plots -> book. Lower modules never import higher ones.
"""

__version__ = "0.1.0"
