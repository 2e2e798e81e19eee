"""QuestionInput: where questions are typed; it says why a question was refused, in place."""

from __future__ import annotations

from textual.widgets import Input

PLACEHOLDER = "Ask a question and press Enter · F1 help"


class QuestionInput(Input):
    """An `Input` that clears itself once a question is accepted and shows a refusal as a hint."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder=PLACEHOLDER, id=id, select_on_focus=False)

    def on_mount(self) -> None:
        self.border_title = "Question"

    def accept(self) -> None:
        """The question was taken: clear the input for the next one."""
        self.clear()
        self.border_subtitle = ""
        self.remove_class("-refused")

    def refuse(self, hint: str) -> None:
        """Keep what was typed and say why it was not asked."""
        self.border_subtitle = hint
        self.add_class("-refused")

    def on_input_changed(self) -> None:
        if self.has_class("-refused"):
            self.border_subtitle = ""
            self.remove_class("-refused")
