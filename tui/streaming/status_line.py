"""One stream's status line, in words: what the pane's line and headless's lines both say.

The parts come most useful first (a narrow pane crops the end), each with the kind of thing it
is, so the dashboard can style it and headless can print it plain:
"streaming · 73 tok · 33.5 tok/s · TTFT 0.72s · 2.89s", then only what is worth a look:
"attempt 2/4" after a retry, "buf 12/100" while events wait for the screen, "cache hit".
Texts are the stream's own words, not yet made safe to show: each front does that its way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from tui.streaming.events import Retrying
from tui.streaming.figures import DASH, rate, seconds, usd
from tui.streaming.metrics import StreamMetrics

LIVE_STATES = ("queued", "starting", "loading model", "streaming", "retrying")
STALL_NOTICE_S = 5.0  # a gap between tokens this long is worth saying, long before the timeout
ENGINE_NOTES = ("", "queued", "loading model", "streaming")  # said by the state itself


class StatusPart(NamedTuple):
    text: str
    # "state" (always first), "warning" (truncated, a stall), "reason" (why it retries),
    # "note" (a status message from the program) or "figure"
    kind: Literal["state", "warning", "reason", "note", "figure"]


@dataclass(frozen=True)
class StatusFacts:
    """What the status line shows of a stream at one instant."""

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
    return f"{_retry_label(retry, left)} - {_retry_reason(retry)}"


def _retry_label(retry: Retrying, left: float) -> str:
    return f"retry {retry.attempt}/{retry.max_attempts - 1} in {max(left, 0):.1f} s"


def _retry_reason(retry: Retrying) -> str:
    return retry.error + (" [injected]" if retry.injected else "")


def state_label(state: str, metrics: StreamMetrics | None) -> str:
    """What a state is called: a wait says what it waits for."""
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


def status_parts(facts: StatusFacts) -> list[StatusPart]:
    """The status line's parts: the state first, then the figures."""
    state, metrics = facts.state, facts.metrics
    label = state_label(state, metrics)
    retry = facts.retry if state == "retrying" else None
    if retry is not None:
        # "retry 1/3 in 1.4 s" says the state: the reason comes next, before any figure, so a
        # narrow pane (three a row at 160 columns) still shows it whole.
        label = _retry_label(retry, facts.retry_left)
    parts = [StatusPart(label, "state")]
    live = state in LIVE_STATES
    if metrics is not None and metrics.truncated and not live:
        parts.append(StatusPart("truncated", "warning"))
    if (stall := stall_text(facts)) is not None:
        parts.append(StatusPart(stall, "warning"))
    if retry is not None:
        parts.append(StatusPart(_retry_reason(retry), "reason"))
    elif state == "starting" and facts.note not in ENGINE_NOTES:
        parts.append(StatusPart(facts.note, "note"))
    if metrics is None:
        return parts
    figures: list[str] = []
    if metrics.tokens or not live:
        speed = metrics.shown_tokens_per_s()
        figures += [f"{metrics.tokens} tok", rate(speed), f"TTFT {seconds(metrics.ttft)}"]
        if (ttfo := ttfo_figure(metrics)) is not None:
            figures.append(ttfo)
        figures += program_figures(metrics)
    if metrics.started_at is not None:
        figures.append(seconds(metrics.e2e))
    if metrics.attempts > 1 and state != "retrying":
        figures.append(f"attempt {metrics.attempts}/{facts.max_attempts}")
    if live and facts.queue_fill:
        figures.append(f"buf {facts.queue_fill}/{facts.buffer_size}")
    if metrics.cache_hit:
        figures.append("cache hit")
    return parts + [StatusPart(text, "figure") for text in figures]


def plain_status_line(facts: StatusFacts) -> str:
    """The line as text: `[done] · 60 tok · 30.0 tok/s · TTFT 0.14s · 2.21s`."""
    state, *rest = status_parts(facts)
    return " · ".join([f"[{state.text}]", *(part.text for part in rest)])
