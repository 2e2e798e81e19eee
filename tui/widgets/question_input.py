"""QuestionInput: where questions are typed; it says why a question was refused, in place.

Enter is handled here, in the input's own turn: the text typed before it is taken and the input
cleared at once, and a message carries that text. Left to Textual's binding, Enter travels up to
the app and back before the value is read, and keys typed meanwhile land in the same question
(typing `one`, Enter, `two`, Enter fast asked `onetwo` twice).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.message import Message
from textual.widgets import Input

PLACEHOLDER = "Ask a question and press Enter · F1 help"


class QuestionInput(Input):
    """An `Input` whose Enter asks what was typed before it, and which shows a refusal as a hint."""

    @dataclass
    class Asked(Message):
        """Questions to ask, in order: one per Enter, or one per non-empty line of a paste."""

        input: QuestionInput
        questions: list[str]
        pasted: bool = False

        @property
        def control(self) -> QuestionInput:
            return self.input

    def __init__(
        self, *, placeholder: str = PLACEHOLDER, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(placeholder=placeholder, id=id, classes=classes, select_on_focus=False)

    def on_mount(self) -> None:
        if not self.border_title:
            self.border_title = "Question"

    # Textual calls these handlers of each class up the MRO until one prevents the default.

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.submit_typed()

    def _on_paste(self, event: events.Paste) -> None:
        event.stop()
        event.prevent_default()
        lines = [line for line in event.text.splitlines() if line.strip()]
        if len(lines) <= 1:
            self.insert_typed(lines[0] if lines else "")
            return
        self.insert_typed(lines[0])  # the first line joins what was typed before the paste
        questions = [self.value, *lines[1:]]
        self.accept()
        self.post_message(self.Asked(self, questions, pasted=True))

    def insert_typed(self, text: str) -> None:
        """Put `text` at the cursor, in place of the selection if there is one."""
        if not text:
            return
        selection = self.selection
        if selection.is_empty:
            self.insert_text_at_cursor(text)
        else:
            self.replace(text, *selection)

    def submit_typed(self) -> None:
        """Ask what is in the input now. Blank text stays, for the refusal to point at."""
        text = self.value
        if text.strip():
            self.accept()
        self.post_message(self.Asked(self, [text]))

    def accept(self) -> None:
        """The question was taken: clear the input for the next one."""
        with self.prevent(Input.Changed):  # a refusal of what was asked may follow: it must show
            self.value = ""
        self.clear_refusal()

    def clear_refusal(self) -> None:
        self.border_subtitle = ""
        self.remove_class("-refused")

    def refuse(self, hint: str) -> None:
        """Keep what was typed and say why it was not asked."""
        self.border_subtitle = hint
        self.add_class("-refused")

    def restore(self, text: str) -> None:
        """A question that could not start: put it back, unless something new was typed since."""
        if not self.value:
            with self.prevent(Input.Changed):  # the refusal's hint stays until the user types
                self.value = text
            self.cursor_position = len(text)

    def on_input_changed(self) -> None:
        if self.has_class("-refused"):
            self.clear_refusal()
