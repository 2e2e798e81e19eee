"""DSPy's import, as the processes that run streams make it."""

from __future__ import annotations

import sys


def import_dspy() -> None:
    """Import DSPy, before logging is routed (DSPy installs its own handler), without IPython.

    DSPy's Evaluate imports IPython only to show HTML tables in a notebook. Here there is none, and
    that import is a third of DSPy's: 0.4 s of every worker's start. IPython is blocked for DSPy's
    import alone; a user's program that imports it later gets the real one.
    """
    blocked = "IPython" not in sys.modules
    if blocked:
        sys.modules["IPython"] = None  # type: ignore[assignment] - `import IPython` raises ImportError
    try:
        import dspy  # noqa: F401
    finally:
        if blocked and sys.modules.get("IPython", 0) is None:
            del sys.modules["IPython"]
