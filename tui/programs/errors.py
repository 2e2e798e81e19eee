"""The one error type a bad program spec raises."""

from __future__ import annotations

from tui.config import ConfigError


class ProgramError(ConfigError):
    """A program that cannot be loaded; the message is one line for the user."""
