"""MarkdownView: Markdown rendered to cached lines, one stable block at a time, within a time budget.

Textual's `Markdown` widget costs a widget per block (about 14.5 MB for a 10 KB answer) and
re-parses as it grows. Here each stable block (see `BlockSplitter`) is rendered once with
Rich's Markdown into strips, and only the growing tail is rendered again. The caller says
how long it may spend (`advance(deadline)`), so many answers completing at once never stall
the event loop; until it has caught up the pane keeps showing the plain text.
"""

from __future__ import annotations

import time
from typing import ClassVar

from rich.markdown import Heading
from rich.markdown import Markdown as RichMarkdown
from rich.segment import Segment
from textual.cache import LRUCache
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.widgets.markdown_blocks import BlockSplitter
from tui.widgets.sanitize import sanitize
from tui.widgets.stream_text import set_virtual_size

TAIL_BACKOFF = 9  # after rendering the growing block, wait 9 times as long before the next


class _Heading(Heading):
    # Centred headings look lost in narrow panes.
    LEVEL_ALIGN: ClassVar = dict.fromkeys(("h1", "h2", "h3", "h4", "h5", "h6"), "left")


class _AnswerMarkdown(RichMarkdown):
    elements: ClassVar = {**RichMarkdown.elements, "heading_open": _Heading}


class MarkdownView(ScrollView, can_focus=False):
    """Renders a growing Markdown text; `advance()` does the work, within a deadline."""

    DEFAULT_CSS = """
    MarkdownView {
        height: 1fr;
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-gutter: stable;
    }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None):
        super().__init__(name=name, id=id, classes=classes)
        self._splitter = BlockSplitter()
        self._blocks: list[str] = []
        self._rendered = 0  # blocks rendered at the current width
        # Rendered lines are kept as plain segment lists, made into a `Strip` only when drawn:
        # a `Strip` carries seven small caches, and a long answer has thousands of lines, which
        # the garbage collector's full passes (event loop stopped) would walk again and again.
        self._strips: list[list[Segment]] = []
        self._tail: list[list[Segment]] = []
        self._tail_dirty = False
        self._tail_due = 0.0  # when the growing block may be rendered again
        self._final = False
        self._width = 0
        self._cache: LRUCache[int, Strip] = LRUCache(128)

    @property
    def source(self) -> str:
        return self._splitter.source

    @property
    def caught_up(self) -> bool:
        """Everything fed so far is on screen."""
        return self._width > 0 and self._rendered == len(self._blocks) and not self._tail_dirty

    @property
    def finished(self) -> bool:
        """The final text has been fed and is all on screen."""
        return self._final and self.caught_up

    def set_source(self, text: str, *, final: bool = False) -> None:
        """Show `text` (untrusted): growing at the end while streaming, or anything new to start over."""
        text = sanitize(text)
        if not text.startswith(self._splitter.source) or (self._final and not final):
            self.reset()
        if text == self._splitter.source and final == self._final:
            return
        self._blocks.extend(self._splitter.feed(text))
        self._final = final
        self._tail_dirty = True

    def reset(self) -> None:
        """Forget the text and what was rendered (a retry streams from the start)."""
        self._splitter = BlockSplitter()
        self._blocks.clear()
        self._strips.clear()
        self._tail.clear()
        self._rendered = 0
        self._tail_dirty = self._final = False
        self._cache.clear()
        self._publish(0)

    def release(self) -> None:
        """Drop the rendered lines to free memory; the text is kept, and rendered again when needed."""
        self._strips.clear()
        self._tail.clear()
        self._rendered = 0
        self._tail_dirty = bool(self._splitter.source)
        self._cache.clear()

    def advance(self, deadline: float) -> bool:
        """Render what is pending until `perf_counter()` passes `deadline`.

        Nothing is rendered once the deadline has passed, and then at most one piece (a block,
        or the growing tail) past it, so many answers ending in one tick share one budget and
        the rest is left for the next ticks. Returns whether the view has caught up.
        """
        if self._width <= 0:
            return False
        if self.caught_up:
            return True  # nothing new: no repaint (a finished pane is advanced on every tick)
        if time.perf_counter() >= deadline:
            return False
        first_changed = len(self._strips)
        changed = False
        while self._rendered < len(self._blocks):
            if self._strips:
                self._strips.append([])
            self._strips.extend(self._render(self._blocks[self._rendered]))
            self._rendered += 1
            changed = True
            if time.perf_counter() >= deadline:
                break
        now = time.perf_counter()
        if (
            self._rendered == len(self._blocks)
            and self._tail_dirty
            and (self._final or now >= self._tail_due)
            and (now < deadline or not changed)
        ):
            tail = self._splitter.tail
            self._tail = self._render(tail) if tail else []
            if self._tail and self._strips:
                self._tail.insert(0, [])
            self._tail_dirty = False
            changed = True
            # The growing block is rendered whole each time: a long one (a paragraph of
            # thousands of words) waits in proportion, so it takes at most a tenth of the time.
            self._tail_due = time.perf_counter() + (time.perf_counter() - now) * TAIL_BACKOFF
        if changed:
            self._publish(first_changed)
        return self.caught_up

    def _render(self, markdown: str) -> list[list[Segment]]:
        console = self.app.console
        options = console.options.update(width=self._width, height=None, highlight=False)
        theme = "monokai" if self.app.current_theme.dark else "default"
        document = _AnswerMarkdown(markdown, code_theme=theme, hyperlinks=False)
        # No base style here: the pane's colours are applied when drawn, so they can change freely.
        return console.render_lines(document, options, pad=False)

    def _publish(self, first_changed: int) -> None:
        follow = self.scroll_y >= self.max_scroll_y
        for row in list(self._cache.keys()):
            if row >= first_changed:
                self._cache.discard(row)
        height = len(self._strips) + len(self._tail)
        set_virtual_size(self, Size(self._width, height))
        self.refresh()
        if follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)

    def fit_width(self, width: int) -> None:
        """Render for `width` cells: the pane passes its plain view's width while this one is hidden."""
        if width != self._width:
            self._width = width
            self.release()

    def on_resize(self) -> None:
        self.fit_width(self.scrollable_content_region.width)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    def render_line(self, y: int) -> Strip:
        row = self.scroll_offset.y + y
        strip = self._cache.get(row)
        if strip is None:
            base = self.rich_style
            stable = len(self._strips)
            if row < stable:
                line = self._strips[row]
            elif row - stable < len(self._tail):
                line = self._tail[row - stable]
            else:
                line = []
            width = self.scrollable_content_region.width
            strip = Strip(Segment.apply_style(line, base)).crop_extend(0, width, base)
            self._cache[row] = strip
        return strip
