"""PaneGrid: the streams' panes in a grid that picks its columns from the space and the pane count."""

from __future__ import annotations

import math

from textual.containers import ScrollableContainer

from tui.widgets.stream_pane import StreamPane

MIN_PANE_WIDTH = 44
MIN_PANE_HEIGHT = 11


class PaneGrid(ScrollableContainer, can_focus=False):
    """Fills the screen while the panes fit; past that, rows keep a readable height and scroll."""

    DEFAULT_CSS = """
    PaneGrid {
        layout: grid;
        height: 1fr;
    }
    """

    @property
    def panes(self) -> list[StreamPane]:
        return list(self.query_children(StreamPane))

    def fit_panes(self) -> None:
        panes = self.panes
        count = len(panes)
        width, height = self.scrollable_content_region.size
        columns = max(1, min(width // MIN_PANE_WIDTH, math.ceil(math.sqrt(count)))) if count else 1
        rows = math.ceil(count / columns) if count else 1
        self.styles.grid_size_columns = columns
        self.styles.grid_rows = "1fr" if rows * MIN_PANE_HEIGHT <= height else str(MIN_PANE_HEIGHT)
        for pane in panes:
            pane.styles.column_span = 1
        if panes and count % columns:
            panes[-1].styles.column_span = columns - count % columns + 1  # no hole at the end

    def on_resize(self) -> None:
        self.fit_panes()
