"""Answers: extracting a final answer from text and deciding when two answers are the same."""

from dynasor_sgl import _moved

# `dynasor_sgl.answers` was the module now at `.equivalence`: its names still resolve, with a
# warning.
__getattr__ = _moved.forward(__name__, "dynasor_sgl.answers.equivalence")
