"""StreamStatus: one stream's status line, redrawn by the dashboard clock, never per token."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from tui.streaming.figures import rate, seconds, spinner
from tui.streaming.status_line import (
    LIVE_STATES,
    StatusFacts,
    StatusPart,
    program_figures,
    retry_text,
    stall_text,
    status_parts,
    ttfo_figure,
)
from tui.widgets.sanitize import one_line

__all__ = ["StatusFacts", "StreamStatus", "status_content"]

ICONS = {"done": "✓", "failed": "✗", "cancelled": "■"}
STATE_STYLES = {
    "queued": "$text-muted",
    "starting": "$text-accent",
    "loading model": "$text-accent",
    "streaming": "$text-primary",
    "retrying": "$text-warning",
    "done": "$text-success",
    "failed": "$text-error",
    "cancelled": "$text-muted",
}
PART_STYLES = {"warning": "bold $text-warning", "reason": "$text-warning"}
SEPARATOR = Content.styled(" · ", "$text-muted")


def status_content(facts: StatusFacts, now: float) -> Content:
    """The status line (`tui.streaming.status_line`), styled: "⠴ streaming · 73 tok · 33.5 tok/s"."""
    state = facts.state
    icon = spinner(now) if state in LIVE_STATES else ICONS.get(state, " ")
    label, *rest = status_parts(facts)
    parts = [Content.styled(f"{icon} {one_line(label.text)}", f"bold {STATE_STYLES.get(state, '')}")]
    parts += [_styled(part) for part in rest]
    return SEPARATOR.join(parts)


def _styled(part: StatusPart) -> Content:
    style = PART_STYLES.get(part.kind)
    text = one_line(part.text)
    return Content.styled(text, style) if style else Content(text)


class StreamStatus(Static):
    """The status line under a pane: always one row, cropped with an ellipsis, never wrapped.

    A fixed height means a redraw never changes the layout; `show()` builds the line only
    when something it shows has changed, and redraws only this row.
    """

    DEFAULT_CSS = """
    StreamStatus {
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes, markup=False)
        self._key: tuple[object, ...] | None = None

    def show(self, facts: StatusFacts, now: float) -> None:
        key = _key(facts, now)
        if key == self._key:
            return
        self._key = key
        self.update(status_content(facts, now), layout=False)


def _key(facts: StatusFacts, now: float) -> tuple[object, ...]:
    """What the line shows, as cheap values: equal keys draw equal lines."""
    state = facts.state
    metrics = facts.metrics
    live = state in LIVE_STATES
    figures: tuple[object, ...] = ()
    if metrics is not None:
        speed = metrics.shown_tokens_per_s()
        figures = (
            metrics.tokens,
            rate(speed),
            seconds(metrics.ttft),
            ttfo_figure(metrics),
            program_figures(metrics),
            seconds(metrics.e2e) if metrics.started_at is not None else None,
            metrics.attempts,
            metrics.cache_hit,
            metrics.truncated,
            metrics.queue_ahead,
        )
    retry = retry_text(facts.retry, facts.retry_left) if facts.retry is not None else None
    note = facts.note if state == "starting" else ""
    stall = stall_text(facts)
    return (
        state,
        spinner(now) if live else None,
        retry,
        note,
        facts.queue_fill if live else 0,
        figures,
        stall,
    )
