"""Tools for a ReAct agent: `dspy-stream --program react --tools examples/tools.py "..."`.

Every public function defined here is a tool; DSPy reads its name, docstring and type hints,
so write them as you would for a colleague. Functions imported from elsewhere are not tools.
"""

from __future__ import annotations

import datetime as _datetime
import math as _math

_CAPITALS = {"france": "Paris", "japan": "Tokyo", "kenya": "Nairobi", "peru": "Lima"}


def capital_of(country: str) -> str:
    """The capital city of a country."""
    return _CAPITALS.get(country.strip().lower(), f"no capital known for {country}")


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression such as '2 * (3 + 4)' or 'sqrt(2)'."""
    allowed = {name: getattr(_math, name) for name in ("sqrt", "log", "sin", "cos", "pi", "e")}
    try:
        return str(eval(expression, {"__builtins__": {}}, allowed))
    except Exception as error:
        return f"cannot evaluate {expression!r}: {error}"


def today() -> str:
    """Today's date, ISO format."""
    return _datetime.date.today().isoformat()
