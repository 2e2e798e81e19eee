"""dspy-stream: a terminal dashboard that streams token-by-token answers from DSPy programs."""

__version__ = "0.1.0"
