"""EntryForm: one labelled box per input field, for a program with several inputs.

Tab moves between the boxes, Enter in any of them asks with every box's value, taken at that
moment; the values stay, so the next question changes only what differs (the box Enter was
pressed in has its value selected: typing replaces it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual import events
from textual.app import ComposeResult
from textual.containers import Grid
from textual.message import Message

from tui.widgets.question_input import QuestionInput

MAX_COLUMNS = 3  # boxes side by side; more fields wrap onto further rows


class FieldInput(QuestionInput):
    """The box of one input field. Enter asks the whole form; a multi-line paste stays in the box."""

    def __init__(self, field: str, *, last: bool) -> None:
        hint = "Enter asks" if last else "Tab: next field · Enter asks"
        super().__init__(placeholder=f"{field} · {hint}", id=f"input-{field}", classes="field-input")
        self.field = field

    def on_mount(self) -> None:
        self.border_title = self.field

    def submit_typed(self) -> None:
        form = next((node for node in self.ancestors if isinstance(node, EntryForm)), None)
        if form is not None:
            form.submit()
            # The value stays, selected: the next question typed here replaces it, Enter asks it again.
            self.select_all()

    def _on_paste(self, event: events.Paste) -> None:
        event.stop()
        event.prevent_default()
        lines = [line.strip() for line in event.text.splitlines() if line.strip()]
        self.insert_typed(" ".join(lines))  # one box holds one line: every pasted line is kept
        if len(lines) > 1:
            self.notify(f"{len(lines)} pasted lines joined into {self.field}", markup=False)


class EntryForm(Grid):
    """The program's input fields, asked together."""

    @dataclass
    class Asked(Message):
        form: EntryForm
        inputs: dict[str, str]

        @property
        def control(self) -> EntryForm:
            return self.form

    DEFAULT_CSS = """
    EntryForm {
        height: auto;
        grid-rows: auto;
    }
    """

    def __init__(self, fields: Sequence[str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.fields = tuple(fields)

    def compose(self) -> ComposeResult:
        for index, field in enumerate(self.fields):
            yield FieldInput(field, last=index == len(self.fields) - 1)

    def on_mount(self) -> None:
        self.styles.grid_size_columns = min(len(self.fields), MAX_COLUMNS)

    @property
    def inputs(self) -> list[FieldInput]:
        return list(self.query(FieldInput))

    def values(self) -> dict[str, str]:
        return {box.field: box.value for box in self.inputs}

    def submit(self) -> None:
        """Ask with every box's value as it is now; the boxes keep their values."""
        for box in self.inputs:
            box.clear_refusal()
        self.post_message(self.Asked(self, self.values()))

    def refuse(self, missing: Sequence[str], hint: str) -> None:
        """Mark the boxes that need a value, and focus the first of them."""
        boxes = [box for box in self.inputs if box.field in missing] or self.inputs[:1]
        for box in boxes:
            box.refuse(hint if box is boxes[0] else "needs a value")
        boxes[0].focus()
