"""VariantsBar: the variants compared, each in the colour its panes and lines carry."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content
from textual.widgets import Static

from tui.widgets.merged_log import stream_colour
from tui.widgets.sanitize import one_line


def variants_line(labels: Sequence[str]) -> Content:
    parts: list[str | tuple[str, str]] = [("Comparing", "bold")]
    for number, label in enumerate(labels, 1):
        colour = stream_colour(number)
        parts += ["  ", (f"[{number}] {one_line(label)}", f"bold {colour}")]
    parts.append(("  · a row a question · F2 one row · F4 compare", "dim"))
    return Content.assemble(*parts)


class VariantsBar(Static):
    def __init__(self, labels: Sequence[str], *, id: str | None = None) -> None:
        super().__init__(variants_line(labels), id=id, markup=False)
