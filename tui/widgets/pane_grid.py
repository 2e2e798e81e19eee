"""PaneGrid: the streams' panes in a grid that picks its columns from the space and the pane count."""

from __future__ import annotations

import math

from textual.containers import ScrollableContainer

from tui.widgets.stream_pane import StreamPane

MIN_PANE_WIDTH = 44
MIN_PANE_HEIGHT = 11


class PaneGrid(ScrollableContainer, can_focus=False):
    """Fills the screen while the panes fit; past that, rows keep a readable height and scroll.

    With `columns` (the variants compared), a row is one question and a column one variant;
    `show_row()` keeps one question's row on screen alone.
    """

    def __init__(self, *, columns: int | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns = columns
        self.row_shown: int | None = None  # the question whose row is shown alone

    DEFAULT_CSS = """
    PaneGrid {
        layout: grid;
        height: 1fr;
    }
    """

    @property
    def panes(self) -> list[StreamPane]:
        # Not `query_children`: a CSS match per child, every tick, was 3% of the front at 64 panes.
        return [child for child in self.children if isinstance(child, StreamPane)]

    def show_row(self, question_no: int | None) -> None:
        """Show only the panes of question `question_no`'s row; None: every row again."""
        self.row_shown = question_no
        for pane in self.panes:
            pane.display = question_no is None or pane.run.job.question_no == question_no
        self.fit_panes()

    def fit_panes(self) -> None:
        width, height = self.scrollable_content_region.size
        if self.columns is not None:
            self._fit_rows(height)
            return
        panes = self.panes
        count = len(panes)
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

    def _fit_rows(self, height: int) -> None:
        """A row a question, a column a variant, in their order; a row shown alone fills the grid."""
        assert self.columns is not None
        order = [(p.run.job.question_no, p.run.job.variant_no) for p in self.panes]
        if order != sorted(order):  # a replay starts them in the order they started
            self.sort_children(key=lambda pane: (pane.run.job.question_no, pane.run.job.variant_no))
        panes = [pane for pane in self.panes if pane.display]
        rows = math.ceil(len(panes) / self.columns) if panes else 1
        self.styles.grid_size_columns = self.columns
        self.styles.grid_rows = "1fr" if rows * MIN_PANE_HEIGHT <= height else str(MIN_PANE_HEIGHT)
        for pane in panes:
            pane.styles.column_span = 1
