"""AggregateScreen: every stream merged into one log, each tagged and coloured, in arrival order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from tui.config import Settings
from tui.widgets.global_status import GlobalStatusBar
from tui.widgets.merged_log import MergedLog, MergedLogView

if TYPE_CHECKING:
    from tui.streaming.session_base import LiveStream as StreamRun


class AggregateScreen(Screen[None]):
    """The merged view. It catches up with the `MergedLog` at each clock tick."""

    BINDINGS = [
        Binding("f3,escape", "app.pop_screen", "Panes", tooltip="Back to the panes"),
    ]

    def __init__(
        self, merged: MergedLog, runs: Sequence[StreamRun], settings: Settings, *, names: tuple[str, str]
    ) -> None:
        """`names`: the model and program the header names (`SessionBase.run_names()`)."""
        super().__init__(id="aggregate")
        self.names = names
        self.merged = merged
        self.runs = runs
        self.settings = settings
        self._view: MergedLogView | None = None
        self._status_bar: GlobalStatusBar | None = None

    def compose(self) -> ComposeResult:
        yield GlobalStatusBar(*self.names, self.settings.mode, id="global-status")
        yield Static("All streams, merged in arrival order", id="aggregate-title")
        yield MergedLogView(self.merged, id="merged-log")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self._view = self.query_one(MergedLogView)
        self._status_bar = self.query_one(GlobalStatusBar)
        self.tick(0.0)

    def tick(self, now: float) -> None:
        if self._view is None or self._status_bar is None:
            return  # not composed yet
        self._view.sync()
        self._status_bar.show(self.runs)
