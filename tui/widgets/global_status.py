"""GlobalStatusBar: the model, how many streams are active, done and failed, and total tokens/s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual.content import Content
from textual.widgets import Static

from tui.streaming.figures import rate
from tui.widgets.sanitize import one_line

if TYPE_CHECKING:
    from tui.streaming.session_base import LiveStream as StreamRun

SEPARATOR = Content.styled(" │ ", "$text-muted")
DOT = Content.styled(" · ", "$text-muted")


def total_tokens_per_s(runs: Sequence[StreamRun]) -> float:
    """Tokens in the last second, across the streams still going."""
    return sum(run.metrics.live_tokens_per_s() for run in runs if run.terminal is None)


def short_model(model: str, width: int = 24) -> str:
    """The model's name without its provider, for a narrow line; "3 models" when comparing."""
    names = [one_line(name.strip()) for name in model.split(",")]
    if len(names) > 1:
        return f"{len(names)} models"
    name = names[0].rsplit("/", 1)[-1]
    return name if len(name) <= width else name[: width - 1] + "…"


class GlobalStatusBar(Static):
    """One line across the top of the dashboard, redrawn by the clock.

    What a narrow terminal drops is chosen, least useful first: the program, the product's
    name, the model, long words for the counts (`2 failed` becomes `2✗`). The counts of
    streams go last, so they are never cut.
    """

    DEFAULT_CSS = """
    GlobalStatusBar {
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(
        self, model: str, program: str, mode: str | None, *, id: str | None = None, brand: str | None = None
    ) -> None:
        """`brand`: what the line starts with, "dspy-stream" unless told (a replay says so)."""
        super().__init__("", id=id, markup=False)
        self._brand = Content.styled(one_line(brand or "dspy-stream"), "bold $text-primary")
        self._model = Content.assemble("model ", (one_line(model), "bold"))
        self._short_model = Content.styled(short_model(model), "bold")
        self._program = Content(f"program {program}" + (f" · mode {mode}" if mode else ""))
        self._shown: Content | None = None

    def show(self, runs: Sequence[StreamRun], offscreen: int = 0) -> None:
        """Redraw with `runs`' counts; `offscreen`: streams failed or retrying out of view."""
        active = sum(run.terminal is None for run in runs)
        states = [run.metrics.state for run in runs if run.terminal is not None]
        done, failed, cancelled = (states.count(s) for s in ("done", "failed", "cancelled"))
        retrying = sum(run.terminal is None and run.metrics.state == "retrying" for run in runs)
        queued = sum(run.terminal is None and run.metrics.state == "queued" for run in runs)
        speed = Content(rate(total_tokens_per_s(runs)))
        error = "$text-error" if failed else ""
        long_counts = Content.assemble(
            (f"{active} active", "$text-primary" if active else ""),
            DOT,
            (f"{done} done", "$text-success"),
            DOT,
            (f"{failed} failed", error),
            DOT,
            f"{cancelled} cancelled",
            *((DOT, (f"{retrying} retrying", "$text-warning")) if retrying else ()),
            *((DOT, f"{queued} queued") if queued else ()),
        )
        short = [(f"{active}▶", "$text-primary" if active else ""), (f"{done}✓", "$text-success")]
        if failed:
            short.append((f"{failed}✗", "$text-error"))
        if cancelled:
            short.append(f"{cancelled}■")
        if retrying:
            short.append((f"{retrying}↻", "$text-warning"))
        short_counts = Content(" ").join(Content.assemble(part) for part in short)
        tail_long = [Content.styled(f"⚠ {offscreen} off screen", "bold $text-warning")] if offscreen else []
        tail_short = [Content.styled(f"⚠{offscreen}", "bold $text-warning")] if offscreen else []
        candidates = (
            [self._brand, self._model, self._program, long_counts, speed, *tail_long],
            [self._brand, self._model, long_counts, speed, *tail_long],
            [self._model, long_counts, speed, *tail_long],
            [self._brand, self._model, short_counts, speed, *tail_long],
            [self._short_model, short_counts, speed, *tail_long],
            [self._short_model, short_counts, speed, *tail_short],
            [short_counts, speed, *tail_short],
            [short_counts, *tail_short],
        )
        width = self.content_region.width or 10_000
        content = SEPARATOR.join(candidates[-1])
        for parts in candidates:
            line = SEPARATOR.join(parts)
            if line.cell_length <= width:
                content = line
                break
        if content != self._shown:
            self._shown = content
            self.update(content, layout=False)

    def on_resize(self) -> None:
        self._shown = None  # the next tick picks the forms that fit the new width
