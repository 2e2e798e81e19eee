"""TableScreen: every stream as one row of a table; Enter opens the stream's pane."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tui.config import Settings
from tui.widgets.global_status import GlobalStatusBar
from tui.widgets.stream_table import StreamTable

TABLE_EVERY_TICKS = 3  # the table's cells are brought up to date about three times a second


class TableScreen(Screen[int | None]):
    """Dismissed with the stream number to open, or None for back to the grid."""

    BINDINGS = [
        Binding("f7,escape", "back", "Panes", tooltip="Back to the panes"),
        Binding("s", "next_sort", "Sort", tooltip="Sort by the next column (again: reverse)"),
    ]

    def __init__(self, dashboard: object, settings: Settings, clock: Callable[[], float]) -> None:
        super().__init__(id="table")
        self.dashboard = dashboard
        self.settings = settings
        self.clock = clock
        self._ticks = 0

    def compose(self) -> ComposeResult:
        settings = self.settings
        model, program = self.dashboard.session.run_names()  # type: ignore[attr-defined]
        yield GlobalStatusBar(model, program, settings.mode, id="global-status")
        yield Static("", id="table-title")
        yield StreamTable(variants=bool(self.dashboard.variants), id="stream-table")  # type: ignore[attr-defined]
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        # Looked up once: the clock may tick this screen while the app takes it down at exit.
        self._table = self.query_one(StreamTable)
        self._status_bar = self.query_one(GlobalStatusBar)
        self._title = self.query_one("#table-title", Static)
        self.tick(self.clock(), force=True)
        self._table.focus()

    def tick(self, now: float, force: bool = False) -> None:
        self._ticks += 1
        if not force and self._ticks % TABLE_EVERY_TICKS:
            return
        table = self._table
        table.show(self.dashboard.panes, now)  # type: ignore[attr-defined]
        self._status_bar.show(self.dashboard.session.runs)  # type: ignore[attr-defined]
        label = next(c.label for c in table.shown_columns if c.key == table.sort_column)
        arrow = "↓" if table.sort_reverse else "↑"
        title = f"{table.row_count} streams · sorted by {label} {arrow} · Enter opens a stream · s sorts"
        self._title.update(title)

    def action_next_sort(self) -> None:
        self._table.next_sort()
        self.tick(self.clock(), force=True)

    def action_back(self) -> None:
        self.dismiss(None)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.dismiss(int(event.row_key.value))
