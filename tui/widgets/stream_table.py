"""StreamTable: one row a stream (AIPerf's worker table), for runs with more streams than panes fit.

Rows are keyed by stream number and their cells updated in place; `show()` is called by the
dashboard clock and touches only the cells whose text changed, so a redraw costs the changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from tui.streaming.figures import DASH, rate, seconds
from tui.widgets.merged_log import stream_colour
from tui.widgets.sanitize import one_line
from tui.widgets.stream_pane import StreamPane

QUESTION_WIDTH = 24
LAST_WORDS = 30


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int | None
    numeric: bool = False


COLUMNS = (
    Column("id", "#", 4, numeric=True),
    Column("question", "question", QUESTION_WIDTH),
    Column("state", "state", 16),
    Column("tokens", "tokens", 7, numeric=True),
    Column("rate", "tok/s", 8, numeric=True),
    Column("ttft", "TTFT", 7, numeric=True),
    Column("retries", "retries", 7, numeric=True),
    Column("last", "last words", LAST_WORDS),
)
VARIANT_COLUMN = Column("variant", "variant", 18)  # shown when variants are compared
STATE_STYLES = {"failed": "bold red", "retrying": "bold yellow", "done": "green", "cancelled": "dim"}


def queued_label(metrics: Any) -> str:
    """What a queued stream waits for, in the state column's width."""
    if metrics.queue_ahead is not None:
        return f"queued: {metrics.queue_ahead} ahead"
    return "queued: slot"


def last_words(answer: str) -> str:
    """The answer's last words, whole words only."""
    tail = one_line(answer[-LAST_WORDS * 3 :])
    if len(tail) <= LAST_WORDS:
        return tail
    tail = tail[-LAST_WORDS:]
    return tail.split(" ", 1)[1] if " " in tail else tail


def row_values(pane: StreamPane, now: float) -> dict[str, Any]:
    """The raw figures of one row: what it is sorted by."""
    metrics = pane.run.metrics
    state = pane.state_at(now)
    answer = pane.answer
    speed = metrics.shown_tokens_per_s()
    return {
        "id": pane.number,
        "variant": one_line(pane.run.job.variant),
        "variant_no": pane.run.job.variant_no,
        "question": one_line(pane.question),
        "state": queued_label(metrics) if state == "queued" else state,
        "tokens": metrics.tokens,
        "rate": speed,
        "ttft": metrics.ttft,
        # Waiting to retry, the next attempt has not started yet but the retry is under way.
        "retries": max(metrics.attempts - 1, 0) + (state == "retrying"),
        "last": last_words(answer),
        "truncated": metrics.truncated,
    }


def cell_text(key: str, values: dict[str, Any]) -> Text:
    value = values[key]
    if key == "question":
        text = value if len(value) <= QUESTION_WIDTH else value[: QUESTION_WIDTH - 1] + "…"
        return Text(text)
    if key == "state":
        shown = value + (" (cut)" if values["truncated"] and value == "done" else "")
        return Text(shown, style=STATE_STYLES.get(value, ""))
    if key == "rate":
        return Text(rate(value, "").strip() if value is not None else DASH, justify="right")
    if key == "ttft":
        return Text(seconds(value), justify="right")
    if key == "variant":
        return Text(value, style=f"bold {stream_colour(values['variant_no'])}")
    if key in ("id", "tokens", "retries"):
        return Text(f"{value:,}", justify="right")
    return Text(value, style="dim")


def sort_key(key: str) -> Callable[[dict[str, Any]], Any]:
    """Sorts `None` (not known yet) after every figure."""

    def by(values: dict[str, Any]) -> Any:
        value = values[key]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return (1, 0)
        return (0, value)

    return by


class StreamTable(DataTable):
    """The streams' table: sortable by any column (click a header, or `s`), Enter opens a stream."""

    def __init__(self, *, variants: bool = False, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.shown_columns = (COLUMNS[0], VARIANT_COLUMN, *COLUMNS[1:]) if variants else COLUMNS
        self.values: dict[int, dict[str, Any]] = {}
        self._cells: dict[int, dict[str, Text]] = {}
        self.sort_column = "id"
        self.sort_reverse = False

    def on_mount(self) -> None:
        for column in self.shown_columns:
            self.add_column(column.label, key=column.key, width=column.width)

    def show(self, panes: Sequence[StreamPane], now: float) -> None:
        """Add rows for new streams, drop closed ones, update changed cells in place."""
        numbers = {pane.number for pane in panes}
        for number in [n for n in self._cells if n not in numbers]:
            self.remove_row(str(number))
            del self._cells[number], self.values[number]
        added = False
        for pane in panes:
            values = row_values(pane, now)
            self.values[pane.number] = values
            cells = {column.key: cell_text(column.key, values) for column in self.shown_columns}
            shown = self._cells.get(pane.number)
            if shown is None:
                self.add_row(*cells.values(), key=str(pane.number))
                added = True
            else:
                for key, text in cells.items():
                    if text != shown[key]:
                        self.update_cell(str(pane.number), key, text)
            self._cells[pane.number] = cells
        if added or self.sort_column != "id":
            self.apply_sort()

    def sort_by(self, column: str) -> None:
        """Sort by `column`; the same column again reverses the order."""
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, column not in ("id", "question", "variant")
        self.apply_sort()

    def apply_sort(self) -> None:
        by = sort_key(self.sort_column)
        self.sort(
            "id",
            key=lambda cell: by(self.values[int(cell.plain.replace(",", ""))]),
            reverse=self.sort_reverse,
        )

    def next_sort(self) -> None:
        keys = [column.key for column in self.shown_columns]
        self.sort_by(keys[(keys.index(self.sort_column) + 1) % len(keys)])

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    @property
    def selected_stream(self) -> int | None:
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return int(row_key.value) if row_key.value is not None else None
