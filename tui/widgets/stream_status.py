"""StreamStatus: one stream's status line, redrawn by the dashboard clock, never per token."""

from __future__ import annotations

from dataclasses import dataclass

from textual.content import Content
from textual.widgets import Static

from tui.streaming.events import Retrying
from tui.streaming.metrics import StreamMetrics
from tui.widgets.figures import DASH, rate, seconds, spinner, usd
from tui.widgets.sanitize import one_line

LIVE_STATES = ("queued", "starting", "loading model", "streaming", "retrying")
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
SEPARATOR = Content.styled(" · ", "$text-muted")
STALL_NOTICE_S = 5.0  # a gap between tokens this long is worth saying, long before the timeout
ENGINE_NOTES = ("", "queued", "loading model", "streaming")  # said by the state itself


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
    timeout: float = 0.0  # the stall timeout, for "no token for 12 s (timeout in 48 s)"


def retry_text(retry: Retrying, left: float) -> str:
    """ "retry 2/3 in 1.4 s - 429 rate limited", marked when the fault was injected on purpose."""
    text = f"retry {retry.attempt}/{retry.max_attempts - 1} in {max(left, 0):.1f} s - {one_line(retry.error)}"
    return text + " [injected]" if retry.injected else text


def state_label(state: str, metrics: StreamMetrics | None) -> str:
    """What a state is called on screen: a wait says what it waits for."""
    if state == "queued" and metrics is not None:
        if metrics.queue_ahead is not None:
            return f"waiting for the model ({metrics.queue_ahead} ahead)"
        return "waiting for a free slot"
    return state


def stall_text(facts: StatusFacts) -> str | None:
    """ "no token for 12 s (timeout in 48 s)" once a live stream has been quiet a while."""
    metrics = facts.metrics
    if metrics is None or facts.state not in ("starting", "streaming"):
        return None
    silence = metrics.silence()
    if silence is None or silence < STALL_NOTICE_S:
        return None
    text = f"no token for {silence:.0f} s"
    if facts.timeout > 0:
        text += f" (timeout in {max(facts.timeout - silence, 0):.0f} s)"
    return text


def status_content(facts: StatusFacts, now: float) -> Content:
    """The status line: state first, then figures, most useful first (a narrow pane crops the end).

    "⠴ streaming · 73 tok · 33.5 tok/s · TTFT 0.72s · 2.89s", then only what is worth a look:
    "attempt 2/4" after a retry, "buf 12/100" while events wait for the screen, "cache hit".
    """
    state = facts.state
    icon = spinner(now) if state in LIVE_STATES else ICONS.get(state, " ")
    metrics = facts.metrics
    label = state_label(state, metrics)
    retry = facts.retry if state == "retrying" else None
    if retry is not None:
        # "retry 1/3 in 1.4 s" says the state: the reason comes next, before any figure, so a
        # narrow pane (three a row at 160 columns) still shows it whole.
        label = f"retry {retry.attempt}/{retry.max_attempts - 1} in {max(facts.retry_left, 0):.1f} s"
    parts = [Content.styled(f"{icon} {label}", f"bold {STATE_STYLES.get(state, '')}")]
    if metrics is not None and metrics.truncated and state not in LIVE_STATES:
        parts.append(Content.styled("truncated", "bold $text-warning"))
    if (stall := stall_text(facts)) is not None:
        parts.append(Content.styled(stall, "bold $text-warning"))
    if retry is not None:
        reason = one_line(retry.error) + (" [injected]" if retry.injected else "")
        parts.append(Content.styled(reason, "$text-warning"))
    elif state == "starting" and facts.note not in ENGINE_NOTES:
        parts.append(Content(one_line(facts.note)))  # a status message from the program
    if metrics is not None:
        live = state in LIVE_STATES
        if metrics.tokens or not live:
            speed = metrics.shown_tokens_per_s()
            parts += [
                Content(f"{metrics.tokens} tok"),
                Content(rate(speed)),
                Content(f"TTFT {seconds(metrics.ttft)}"),
            ]
            if (ttfo := ttfo_figure(metrics)) is not None:
                parts.append(Content(ttfo))
            parts += [Content(part) for part in program_figures(metrics)]
        if metrics.started_at is not None:
            parts.append(Content(seconds(metrics.e2e)))
        if metrics.attempts > 1 and state != "retrying":
            parts.append(Content(f"attempt {metrics.attempts}/{facts.max_attempts}"))
        if live and facts.queue_fill:
            parts.append(Content(f"buf {facts.queue_fill}/{facts.buffer_size}"))
        if metrics.cache_hit:
            parts.append(Content("cache hit"))
    return SEPARATOR.join(parts)


def program_figures(metrics: StreamMetrics) -> tuple[str, ...]:
    """Provider tokens and cost, once the provider has said them: "in 412 · out 96", "$0.0012".

    No price known (the local model, an unknown one) shows no cost, never "$0".
    """
    parts: list[str] = []
    if metrics.input_tokens is not None or metrics.provider_output_tokens is not None:
        counts = (metrics.input_tokens, metrics.provider_output_tokens)
        shown_in, shown_out = (DASH if n is None else f"{n:,}" for n in counts)
        parts.append(f"in {shown_in} · out {shown_out}")
    if metrics.cost_usd is not None:
        parts.append(usd(metrics.cost_usd))
    return tuple(parts)


def ttfo_figure(metrics: StreamMetrics) -> str | None:
    """ "TTFO 1.20s" where another field streamed before the final one (else it equals TTFT)."""
    first, first_output, ttfo = metrics.first_token_at, metrics.first_output_at, metrics.ttfo
    if first is None or first_output is None or ttfo is None or first_output - first <= 0.0005:
        return None
    return f"TTFO {seconds(ttfo)}"


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
