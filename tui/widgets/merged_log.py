"""The aggregate view: every stream's text and notes merged into one log, in arrival order.

Each stream's events are read by its pane's worker (a `StreamRun` has one consumer), which
copies them into `MergedLog` as they arrive. Within one window (`seal()` ends it, twice a
second) the text of one stream is gathered into one entry, placed where its first token
arrived, so the log reads as phrases rather than a word from each stream in turn: arrival
order, at the window's resolution. `MergedLogView` draws the entries with a colour and a `[Stream N]` tag.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style

from tui.widgets.stream_text import StreamText

PALETTE = (
    "#4ea1ff",
    "#ff8c42",
    "#3ddc84",
    "#ff5fa2",
    "#c792ea",
    "#ffd166",
    "#2ec4b6",
    "#f25f5c",
    "#9ccc65",
    "#7986cb",
)


def stream_colour(stream_id: int) -> str:
    return PALETTE[(stream_id - 1) % len(PALETTE)]


@dataclass
class Entry:
    stream_id: int
    kind: str  # an output field ("answer", "reasoning") or "note"
    text: str


class MergedLog:
    """Entries in arrival order; the oldest are dropped past `max_entries`."""

    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self.entries: list[Entry] = []
        self.dropped = 0  # entries dropped from the front, so indexes stay absolute
        self._open: dict[tuple[int, str], Entry] = {}
        # With variants a line names the question and the variant, coloured by the variant.
        self.tags: dict[int, tuple[str, int]] = {}

    @property
    def end(self) -> int:
        return self.dropped + len(self.entries)

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.dropped]

    def add_text(self, stream_id: int, field: str, text: str) -> None:
        key = (stream_id, field)
        entry = self._open.get(key)
        if entry is None:
            last = self.entries[-1] if self.entries else None
            if last is not None and last.stream_id == stream_id and last.kind == field:
                entry = last  # the same stream again with nothing in between: one line goes on
            else:
                entry = self._append(Entry(stream_id, field, ""))
            self._open[key] = entry
        entry.text += text

    def tag(self, stream_id: int) -> tuple[str, str]:
        """A stream's tag, `Stream 3` or `Q1 · gpt-4o-mini`, and its colour."""
        tag, colour_no = self.tags.get(stream_id, (f"Stream {stream_id}", stream_id))
        return tag, stream_colour(colour_no)

    def add_question(self, stream_id: int, question: str, *, tag: str = "", colour_no: int = 0) -> None:
        """A stream starts: the merged log says which question it answers."""
        if tag:
            self.tags[stream_id] = (tag, colour_no or stream_id)
        self._open = {key: e for key, e in self._open.items() if key[0] != stream_id}
        self._append(Entry(stream_id, "question", question))

    def add_note(self, stream_id: int, text: str) -> None:
        self._open = {key: e for key, e in self._open.items() if key[0] != stream_id}
        self._append(Entry(stream_id, "note", text))

    def seal(self) -> None:
        """End the window: text arriving from now on goes into new entries."""
        self._open.clear()

    def _append(self, entry: Entry) -> Entry:
        self.entries.append(entry)
        if len(self.entries) > self.max_entries:
            drop = len(self.entries) - self.max_entries + self.max_entries // 10
            del self.entries[:drop]
            self.dropped += drop
        return entry


class MergedLogView(StreamText, can_focus=True):
    """Draws a `MergedLog`, catching up with it at each `sync()`.

    Focused, it scrolls by keyboard (Up/Down, PageUp/PageDown, Home/End); at the end it follows.
    """

    def __init__(self, log: MergedLog, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(max_lines=log.max_entries, id=id, classes=classes)
        self.merged = log
        self._next = log.dropped  # the first entry not drawn yet
        self._last_length = 0  # how much of the entry before `_next` is drawn
        self._line_owner: tuple[int, str] | None = None
        self._line_break = False

    def sync(self) -> None:
        self._pieces: list[tuple[str, Style | None]] = []
        self._catch_up()
        self.extend(self._pieces)

    def _catch_up(self) -> None:
        log = self.merged
        if self._next < log.dropped:
            self._next, self._last_length, self._line_owner = log.dropped, 0, None
        if self._next > log.dropped:
            previous = log.entry(self._next - 1)
            if len(previous.text) > self._last_length:
                self._emit(previous, previous.text[self._last_length :])
                self._last_length = len(previous.text)
        while self._next < log.end:
            entry = log.entry(self._next)
            self._line_break = True
            self._emit(entry, entry.text)
            self._next += 1
            self._last_length = len(entry.text)

    def _emit(self, entry: Entry, text: str) -> None:
        """Write text; each new line is tagged, and blank lines are left out."""
        name, colour = self.merged.tag(entry.stream_id)
        styles = {
            "note": Style(color=colour, italic=True),
            "reasoning": Style(dim=True),
            "question": Style(bold=True),
        }
        style = styles.get(entry.kind)
        owner = (entry.stream_id, entry.kind)
        for index, part in enumerate(text.split("\n")):
            if index:
                self._line_break = True
            if not part:
                continue
            if self._line_break or owner != self._line_owner:
                if self._line_owner is not None:
                    self._pieces.append(("\n", None))
                label = {"reasoning": " (reasoning)", "question": " asks:"}.get(entry.kind, "")
                tag = f"[{name}]{label}"
                self._pieces.append((tag + " ", Style(color=colour, bold=True)))
                self._line_owner, self._line_break = owner, False
                part = part.lstrip()
            self._pieces.append((part, style))
