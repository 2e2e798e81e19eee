"""StreamText: a wrapping, append-only text view drawn with the Line API.

`Log` never wraps and `Markdown` re-parses as it grows; this view keeps the text as logical
lines, word-wraps them into rows by offset, and on each write re-wraps only the last row
(`wrap_offsets` is prefix-stable), so appending costs the size of the new text, not of the
answer. Only visible rows are rendered, and rendered rows are cached.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.segment import Segment
from rich.style import Style, StyleType
from rich.text import Text
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.widgets.sanitize import sanitize
from tui.widgets.wrap import wrap_offsets


def set_virtual_size(view: ScrollView, size: Size) -> None:
    """Resize a scroll view's content without a layout of the whole screen.

    `virtual_size` is a layout reactive: each change re-arranges every widget on the screen,
    which with dozens of growing panes was most of the dashboard's cost. A line-API view's
    own box does not depend on its content, so only its scrollbars need updating; showing or
    hiding a scrollbar still makes a layout (`show_vertical_scrollbar` is a layout reactive).
    """
    if size == view.virtual_size:
        return
    view.set_reactive(ScrollView.virtual_size, size)
    view._scroll_update(size)


class StreamText(ScrollView, can_focus=False):
    """Text that grows at the end, wrapped to the widget's width; follows the end while at the end."""

    DEFAULT_CSS = """
    StreamText {
        height: 1fr;
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-gutter: stable;
    }
    """

    def __init__(
        self,
        *,
        max_lines: int | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.max_lines = max_lines
        """Logical lines kept; the oldest are dropped beyond it (None: keep all)."""
        self._lines: list[Text] = [Text()]
        self._rows: list[tuple[int, int, int]] = []  # (logical line, start, end) per screen row
        self._first_row: list[int] = []  # the first row of each logical line
        self._width = 0
        self._cache: LRUCache[int, Strip] = LRUCache(128)  # a maximised pane's rows, twice
        self._follow_when_shown: bool | None = None  # written while hidden: follow the end on show?

    # -- content ----------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return "\n".join(line.plain for line in self._lines)

    def write(self, text: str, style: StyleType | None = None) -> None:
        """Append text (untrusted: shown literally); a newline starts a new line."""
        self.extend([(text, style)])

    def extend(self, pieces: Iterable[tuple[str, StyleType | None]]) -> None:
        """Append several styled pieces, then wrap and refresh once."""
        first_changed = len(self._lines) - 1
        changed = False
        for text, style in pieces:
            for index, part in enumerate(sanitize(text).split("\n")):
                if index:
                    self._lines.append(Text())
                if part:
                    self._lines[-1].append(part, style)
                changed = True
        if changed:
            dropped = self._prune()
            self._rewrap(max(first_changed - dropped, 0))

    def clear(self) -> None:
        self._lines = [Text()]
        self._forget_rows()
        self._rewrap(0)
        self.scroll_to(0, 0, animate=False, immediate=True)

    @property
    def row_count(self) -> int:
        return len(self._rows)

    # -- wrapping -----------------------------------------------------------------------------

    def _forget_rows(self) -> None:
        self._rows.clear()
        self._first_row.clear()
        self._cache.clear()

    def _prune(self) -> int:
        """Drop the oldest lines past `max_lines`, a tenth more at a time so the cost is amortised."""
        if self.max_lines is None or len(self._lines) <= self.max_lines:
            return 0
        drop = len(self._lines) - self.max_lines + self.max_lines // 10
        del self._lines[:drop]
        self._forget_rows()
        return drop

    def _rewrap(self, first_line: int) -> None:
        """Re-wrap from the last row of `first_line` to the end; refresh the rows that changed."""
        width = self._width
        if width <= 0:
            return
        follow = self.scroll_y >= self.max_scroll_y
        rows, first_rows = self._rows, self._first_row
        if first_line < len(first_rows):
            after = first_rows[first_line + 1] if first_line + 1 < len(first_rows) else len(rows)
            restart_row = after - 1
            restart = rows[restart_row][1]
            del rows[restart_row:]
            del first_rows[first_line + 1 :]
        else:
            first_line, restart_row, restart = len(first_rows), len(rows), 0
        for index in range(first_line, len(self._lines)):
            if index >= len(first_rows):
                first_rows.append(len(rows))
            start = restart if index == first_line else 0
            rows.extend((index, a, b) for a, b in wrap_offsets(self._lines[index].plain, width, start))
        for row in range(restart_row, len(rows)):
            self._cache.discard(row)
        if not self.display:
            # Hidden (its pane shows the answer as Markdown): a hidden widget's refresh makes
            # Textual arrange every widget on the screen again. Size and scroll catch up on show.
            if self._follow_when_shown is None:
                self._follow_when_shown = follow
            return
        set_virtual_size(self, Size(width, len(rows)))
        self.refresh_lines(restart_row, max(len(rows) - restart_row, 1))
        if follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)

    def on_show(self) -> None:
        follow, self._follow_when_shown = self._follow_when_shown, None
        if follow is None:
            return
        set_virtual_size(self, Size(self._width, len(self._rows)))
        self.refresh()
        if follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)

    def _wrap_width(self) -> int:
        return self.scrollable_content_region.width

    def on_resize(self) -> None:
        width = self._wrap_width()
        if width != self._width:
            self._width = width
            self._forget_rows()
            self._rewrap(0)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    # -- rendering ------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        row = self.scroll_offset.y + y
        strip = self._cache.get(row)
        if strip is None:
            # The finished strip is cached, not the row before `crop_extend`: each `Strip` carries
            # seven small caches, and the row would keep its cropped copy alive too. Fewer live
            # objects make the garbage collector's full passes (event loop stopped) shorter.
            base = self.rich_style
            width = self.scrollable_content_region.width
            strip = self._render_row(row, base).crop_extend(0, width, base)
            self._cache[row] = strip
        return strip

    def _render_row(self, row: int, base: Style) -> Strip:
        if row >= len(self._rows):
            return Strip.blank(self._width, base)
        index, start, end = self._rows[row]
        line = self._lines[index]
        if not line.spans:
            piece = line.plain[start:end].rstrip()
            return Strip([Segment(piece, base)]) if piece else Strip.blank(0, base)
        text = line[start:end]
        text.rstrip()
        text.stylize_before(base)
        return Strip(text.render(self.app.console))
