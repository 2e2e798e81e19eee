"""Tools for `--program react --tools tests/programs/sample_tools.py`."""

from __future__ import annotations

from json import dumps  # imported, so not a tool


def lookup(term: str) -> str:
    """Look a term up in the glossary."""
    return f"{term}: a systems language"


def multiply(a: int, b: int) -> int:
    """Multiply two numbers."""
    return a * b


def _helper() -> None:
    """Private: not a tool."""


__all__ = ["dumps", "lookup", "multiply"]
