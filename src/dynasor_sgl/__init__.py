"""dynasor-sgl: a runtime for LLM reasoning programs on SGLang with Certaindex early exit."""

from dynasor_sgl import _moved

__version__ = "0.1.0"

_moved.install()
