"""The compare table: a row per variant, in its colour; the best value of each column starred."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

from tui.streaming.compare import COMPARE_COLUMNS, CompareColumn, best_of_columns
from tui.streaming.figures import DASH, millis, rate, usd
from tui.widgets.merged_log import stream_colour
from tui.widgets.sanitize import one_line

BEST_MARK = "★"


def cell_text(column: CompareColumn, value: Any) -> str:
    if value is None:
        return DASH
    if column.unit == "s":
        return millis(value)
    if column.unit == "usd":
        return usd(value)
    if column.unit in ("tok/s", "req/s"):
        return rate(value, column.unit)
    return f"{value:,}"


# Narrower than this, the table turns: a column per variant, a row per figure.
WIDE_COLUMNS = 120


def _name(number: int, label: str, live: int) -> Text:
    name = Text(one_line(label), style=f"bold {stream_colour(number)}")
    if live:
        name.append(f"  {live} live", style="dim")
    return name


def _cell(column: CompareColumn, label: str, row: Mapping[str, Any], best: Mapping[str, set[str]]) -> Text:
    text = cell_text(column, row.get(column.key))
    if label in best.get(column.key, ()):
        return Text(f"{BEST_MARK} {text}", style="bold green", justify="right")
    return Text(text, justify="right")


def compare_table(
    rows: Mapping[str, Mapping[str, Any]], *, goodput: bool, width: int = WIDE_COLUMNS
) -> Table:
    """`rows`: `tui.streaming.compare.compare_table()`'s, by variant label; a row per variant, or
    where `width` is narrow, a column per variant."""
    columns = [c for c in COMPARE_COLUMNS if goodput or c.key != "goodput"]
    best = best_of_columns(rows)
    if width < WIDE_COLUMNS:
        table = Table(expand=False, box=None, padding=(0, 1), header_style="bold")
        table.add_column("figure")
        for number, (label, row) in enumerate(rows.items(), 1):
            table.add_column(_name(number, label, row["live"]), justify="right")
        for column in columns:
            table.add_row(column.label, *(_cell(column, label, row, best) for label, row in rows.items()))
        return table
    table = Table(expand=False, box=None, padding=(0, 2), header_style="bold")
    table.add_column("variant")
    for column in columns:
        table.add_column(column.label, justify="right")
    for number, (label, row) in enumerate(rows.items(), 1):
        table.add_row(
            _name(number, label, row["live"]), *(_cell(column, label, row, best) for column in columns)
        )
    return table
