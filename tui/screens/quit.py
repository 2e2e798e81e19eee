"""QuitScreen: asks before quitting while streams are live; quitting cancels them cleanly."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class QuitScreen(ModalScreen[bool]):
    """Dismissed with True to cancel the live streams and quit."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Keep streaming")]

    def __init__(self, live: int) -> None:
        super().__init__(id="quit")
        self.live = live

    def compose(self) -> ComposeResult:
        streams = "1 stream is" if self.live == 1 else f"{self.live} streams are"
        with Grid(id="quit-dialog", classes="dialog"):
            yield Label(f"{streams} still streaming. Cancel and quit?", id="quit-question")
            yield Button("Cancel streams and quit", variant="error", id="quit-yes")
            yield Button("Keep streaming", variant="primary", id="quit-no")

    def on_mount(self) -> None:
        self.query_one("#quit-no", Button).focus()

    @on(Button.Pressed)
    def _answer(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "quit-yes")
