"""A program in one line, as a newcomer reads it: its name, input fields and output fields."""

from __future__ import annotations

from tui.streaming.program_info import OutputField, ProgramInfo


def _output(field: OutputField) -> str:
    # `Literal['lookup', 'multiply', 'finish']` reads as `Literal`: the line names, it does not list.
    kind = field.type_name.split("[", 1)[0]
    return field.key if kind == "str" else f"{field.key}: {kind}"


def signature_line(info: ProgramInfo) -> str:
    """ "context, question → answer, confidence: float" (DSPy's signature order)."""
    return f"{', '.join(info.inputs)} → {', '.join(_output(f) for f in info.outputs) or '…'}"


def program_line(info: ProgramInfo) -> str:
    """ "predict: question → answer" """
    return f"{info.label}: {signature_line(info)}"
