"""dynasor-sgl: a runtime for LLM reasoning programs on SGLang with Certaindex early exit."""

__version__ = "0.1.0"
