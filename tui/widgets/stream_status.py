"""StreamStatus: one stream's status line, redrawn by the dashboard clock, never per token."""

from __future__ import annotations

from dataclasses import dataclass

from textual.content import Content
from textual.widgets import Static

from tui.streaming.events import Retrying
from tui.streaming.metrics import StreamMetrics
from tui.widgets.figures import rate, seconds, spinner
from tui.widgets.sanitize import one_line

LIVE_STATES = ("queued", "loading", "streaming", "retrying")
ICONS = {"done": "✓", "failed": "✗", "cancelled": "■"}
STATE_STYLES = {
    "queued": "$text-muted",
    "loading": "$text-accent",
    "streaming": "$text-primary",
    "retrying": "$text-warning",
    "done": "$text-success",
    "failed": "$text-error",
    "cancelled": "$text-muted",
}
SEPARATOR = Content.styled(" · ", "$text-muted")


@dataclass(frozen=True)
class StatusFacts:
    """What the status line shows, gathered by the pane at each tick."""

    state: str
    metrics: StreamMetrics | None
    queue_fill: int = 0
    buffer_size: int = 0
    max_attempts: int = 1
    retry: Retrying | None = None
    retry_left: float = 0.0
    note: str = ""


def retry_text(retry: Retrying, left: float) -> str:
    """ "retry 2/3 in 1.4 s - 429 rate limited", marked when the fault was injected on purpose."""
    text = f"retry {retry.attempt}/{retry.max_attempts - 1} in {max(left, 0):.1f} s - {one_line(retry.error)}"
    return text + " [injected]" if retry.injected else text


def status_content(facts: StatusFacts, now: float) -> Content:
    """The status line: state first, then live figures, most useful first (narrow panes crop the end)."""
    state = facts.state
    icon = spinner(now) if state in LIVE_STATES else ICONS.get(state, " ")
    parts = [Content.styled(f"{icon} {state}", f"bold {STATE_STYLES.get(state, '')}")]
    if state == "retrying" and facts.retry is not None:
        parts.append(Content.styled(retry_text(facts.retry, facts.retry_left), "$text-warning"))
    elif facts.note and state in ("queued", "loading"):
        parts.append(Content(one_line(facts.note)))
    metrics = facts.metrics
    if metrics is not None:
        live = state in LIVE_STATES
        speed = metrics.live_tokens_per_s() if live else metrics.tokens_per_s
        attempts = max(metrics.attempts, 1)
        parts += [
            Content(rate(speed)),
            Content(f"TTFT {seconds(metrics.ttft)}"),
            Content(f"{metrics.tokens} tok"),
            Content(seconds(metrics.e2e)),
            Content(f"try {attempts}/{facts.max_attempts}"),
            Content(f"buf {facts.queue_fill}/{facts.buffer_size}"),
        ]
        if metrics.cache_hit:
            parts.append(Content("cache hit"))
    return SEPARATOR.join(parts)


class StreamStatus(Static):
    """The status line under a pane. `show()` skips the redraw when nothing changed."""

    DEFAULT_CSS = """
    StreamStatus {
        height: 1;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes, markup=False)
        self._shown: Content | None = None

    def show(self, facts: StatusFacts, now: float) -> None:
        content = status_content(facts, now)
        if content == self._shown:
            return
        self._shown = content
        # One row, or two in a narrow pane; a layout pass only when that changes, not per update.
        rows = 1 if content.cell_length <= self.content_size.width else 2
        if rows != self.styles.height.value:
            self.styles.height = rows
        self.update(content, layout=False)
