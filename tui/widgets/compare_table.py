"""The compare table: a row per variant, in its colour; the best value of each column starred."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

from tui.streaming.compare import COMPARE_COLUMNS, CompareColumn, best_of_columns
from tui.widgets.figures import DASH, millis, rate, usd
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


def compare_table(rows: Mapping[str, Mapping[str, Any]], *, goodput: bool) -> Table:
    """`rows`: `tui.streaming.compare.compare_table()`'s, by variant label."""
    columns = [c for c in COMPARE_COLUMNS if goodput or c.key != "goodput"]
    best = best_of_columns(rows)
    table = Table(expand=False, box=None, padding=(0, 2), header_style="bold")
    table.add_column("variant")
    for column in columns:
        table.add_column(column.label, justify="right")
    for number, (label, row) in enumerate(rows.items(), 1):
        name = Text(one_line(label), style=f"bold {stream_colour(number)}")
        if row["live"]:
            name.append(f"  {row['live']} live", style="dim")
        cells = []
        for column in columns:
            text = cell_text(column, row.get(column.key))
            if label in best.get(column.key, ()):
                cells.append(Text(f"{BEST_MARK} {text}", style="bold green"))
            else:
                cells.append(Text(text))
        table.add_row(name, *cells)
    return table
