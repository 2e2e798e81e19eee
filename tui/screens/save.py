"""SaveScreen: asks where to save the session; `.json` saves JSON, anything else Markdown."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class SaveScreen(ModalScreen[Path | None]):
    """Dismissed with the path to write, or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, default: Path) -> None:
        super().__init__(id="save")
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(id="save-dialog", classes="dialog"):
            yield Label("Save the session: questions, answers, partial answers, metrics, settings.")
            yield Label("A name ending in .json saves JSON; any other, Markdown.", classes="hint")
            yield Input(str(self.default), id="save-path", select_on_focus=False)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        path = event.value.strip()
        self.dismiss(Path(path).expanduser() if path else None)
