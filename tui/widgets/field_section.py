"""The pieces of a pane's trail: a labelled section per output field, and the program's timeline.

A program with several output fields, stages or tools streams into a trail above its final
answer, in the order things arrive: a section for each run of one field's tokens (reasoning
dimmed, in a collapsible), a timeline block for consecutive tool calls and stage marks, and,
when the Prediction arrives, the fields that do not stream, formatted.
"""

from __future__ import annotations

import json
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Collapsible, Static

from tui.widgets.stream_text import StreamText


class Trail(VerticalScroll, can_focus=False):
    """The pane's trail: scrolled with the wheel; Tab goes from pane to pane, not into it.

    It follows its newest line until the wheel scrolls it up, and again once scrolled back down
    to the end.
    """

    following = True

    def on_mouse_scroll_up(self) -> None:
        self.following = False

    def on_mouse_scroll_down(self) -> None:
        self.call_after_refresh(self._follow_at_end)

    def _follow_at_end(self) -> None:
        self.following = self.scroll_y >= self.max_scroll_y

    def keep_following(self) -> None:
        """Scroll to the end where following and the end moved (new lines, a section grown)."""
        for view in self.query(GrowingText):
            if view.text and not view.row_count:
                view.on_resize()  # written before it had a width, and no resize came after
        if self.following and self.scroll_y < self.max_scroll_y:
            self.scroll_end(animate=False, immediate=True)


class GrowingText(StreamText):
    """A `StreamText` sized to its text (up to its max-height): the layout is redone only when
    the number of rows changes while it still grows, never per token."""

    def _rewrap(self, first_line: int) -> None:
        rows = len(self._rows)
        super()._rewrap(first_line)
        if len(self._rows) != rows and self.styles.height is not None and self.styles.height.is_auto:
            limit = self.styles.max_height
            if limit is None or not limit.is_cells or rows < limit.value:
                self.refresh(layout=True)


class FieldSection(Vertical):
    """One output field's text under its name; reasoning is dimmed and can be folded."""

    def __init__(self, key: str, *, reasoning: bool = False) -> None:
        super().__init__(classes="field-section -reasoning" if reasoning else "field-section")
        self.key = key
        self.reasoning = reasoning
        self.text_view = GrowingText(classes="field-text")

    def compose(self) -> ComposeResult:
        if self.reasoning:
            with Collapsible(title=self.key, collapsed=False, classes="reasoning"):
                yield self.text_view
        else:
            yield Static(self.key, classes="field-label", markup=False)
            yield self.text_view

    def write(self, text: str) -> None:
        if not self.text_view.text:
            text = text.lstrip()  # a field streaming again starts with a paragraph break
        if text:
            self.text_view.write(text)

    @property
    def text(self) -> str:
        return self.text_view.text


class TimelineBlock(GrowingText):
    """Consecutive timeline lines (`→ tool(args)`, `← result`, `▸ stage`, `» printed`), one line
    each; the newest `MAX_LINES` are kept, for a program that prints thousands."""

    MAX_LINES = 500

    def __init__(self) -> None:
        super().__init__(classes="timeline", max_lines=self.MAX_LINES)
        self.lines = 0

    def add_lines(self, messages: list[str]) -> None:
        text = "\n".join(" ".join(message.split()) for message in messages)
        self.write(("\n" if self.lines else "") + text)
        self.lines += len(messages)


def format_value(value: Any) -> str:
    """A field that does not stream, as text: numbers and strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float) or value is None:
        return str(value)
    if hasattr(value, "model_dump"):  # a Pydantic model
        value = value.model_dump(mode="json")
    try:
        return json.dumps(value, ensure_ascii=False, indent=2, default=str)
    except (TypeError, ValueError):
        return str(value)
