"""DSPy status messages for a program's timeline: tool calls with arguments and results, stage start/end."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import dspy
from dspy.streaming import StatusMessageProvider

from tui.programs.info import display_name

RESULT_CHARS = 120
ARGS_CHARS = 160


class StatusNote(str):
    """A status message that knows its kind (`tool`, `stage`); DSPy carries it as a plain string."""

    kind: str = "state"

    def __new__(cls, text: str, kind: str) -> StatusNote:
        note = super().__new__(cls, text)
        note.kind = kind
        return note


def short(value: Any, limit: int) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tool_args(inputs: dict[str, Any]) -> dict[str, Any]:
    # Tool.__call__(**kwargs) and acall(**kwargs) reach callbacks as {"kwargs": {...}}.
    args = inputs.get("kwargs", inputs)
    return args if isinstance(args, dict) else inputs


class ProgramStatusProvider(StatusMessageProvider):
    """One per attempt: names stages by the program's own predictor names.

    Module ends carry no instance, so starts are kept on a stack; a module that is not a stage
    pushes None and its end says nothing. One stack per task and thread, so stages run side by
    side (`asyncio.gather`, `dspy.Parallel`) end under their own names.
    """

    def __init__(self, program: dspy.Module) -> None:
        self._stages = {id(p): display_name(name) for name, p in program.named_predictors()}
        self._root = id(program)
        self._open: dict[tuple[int, int], list[str | None]] = {}

    def _stack(self) -> list[str | None]:
        return self._open.setdefault(_where(), [])

    def tool_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str:
        name = getattr(instance, "name", type(instance).__name__)
        return StatusNote(f"→ {name}({short(_tool_args(inputs), ARGS_CHARS)})", "tool")

    def tool_end_status_message(self, outputs: Any) -> str:
        return StatusNote(f"← {short(outputs, RESULT_CHARS)}", "tool")

    def module_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        stage = self._stages.get(id(instance)) if id(instance) != self._root else None
        self._stack().append(stage)
        return StatusNote(f"▸ {stage}", "stage") if stage else None

    def module_end_status_message(self, outputs: Any) -> str | None:
        stack = self._stack()
        stage = stack.pop() if stack else None
        return StatusNote(f"✓ {stage}", "stage") if stage else None


def _where() -> tuple[int, int]:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop in this thread
        task = None
    return threading.get_ident(), id(task) if task is not None else 0


def status_kind(message: Any) -> str:
    return getattr(message, "kind", "state")
