"""GlobalStatusBar: the model, how many streams are active, done and failed, and total tokens/s."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content
from textual.widgets import Static

from tui.streaming.runner import StreamRun
from tui.widgets.figures import rate
from tui.widgets.sanitize import one_line

SEPARATOR = Content.styled(" │ ", "$text-muted")


def total_tokens_per_s(runs: Sequence[StreamRun]) -> float:
    """Tokens in the last second, across the streams still going."""
    return sum(run.metrics.live_tokens_per_s() for run in runs if run.terminal is None)


class GlobalStatusBar(Static):
    """One line across the top of the dashboard, redrawn by the clock."""

    DEFAULT_CSS = """
    GlobalStatusBar {
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, model: str, program: str, mode: str | None, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self._head = SEPARATOR.join(
            [
                Content.styled("dspy-stream", "bold $text-primary"),
                Content.assemble("model ", (one_line(model), "bold")),
                Content(f"program {program}" + (f" · mode {mode}" if mode else "")),
            ]
        )
        self._shown: Content | None = None

    def show(self, runs: Sequence[StreamRun]) -> None:
        active = sum(run.terminal is None for run in runs)
        states = [run.metrics.state for run in runs if run.terminal is not None]
        counts = Content.assemble(
            (f"{active} active", "$text-primary" if active else ""),
            " · ",
            (f"{states.count('done')} done", "$text-success"),
            " · ",
            (f"{states.count('failed')} failed", "$text-error" if "failed" in states else ""),
            " · ",
            f"{states.count('cancelled')} cancelled",
        )
        content = SEPARATOR.join([self._head, counts, Content(rate(total_tokens_per_s(runs)))])
        if content != self._shown:
            self._shown = content
            self.update(content, layout=False)
