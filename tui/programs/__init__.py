"""Loading the user's DSPy program: built-ins, a signature, `file.py:NAME`, `module:NAME`, saved state.

`load_program(settings)` returns a `LoadedProgram`: a factory that makes a fresh copy of the
program for each stream attempt, and the `ProgramInfo` every consumer lays a stream out by.
Every mistake raises `ProgramError`, one line for the user (exit code 2 on the command line).
"""

from __future__ import annotations

from tui.programs.errors import ProgramError
from tui.programs.loader import LoadedProgram, load_program

__all__ = ["LoadedProgram", "ProgramError", "load_program"]
