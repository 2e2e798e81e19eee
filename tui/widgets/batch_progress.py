"""BatchProgress: questions ended (done, failed or cancelled) out of the batch, and when the rest
should have ended."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from tui.streaming.figures import clock_time


def eta(ended: int, total: int, elapsed: float) -> float | None:
    """Seconds left, at the pace so far; None before the first question has ended."""
    if ended <= 0 or total <= ended:
        return None if ended <= 0 else 0.0
    return elapsed / ended * (total - ended)


class BatchProgress(Horizontal):
    """A progress bar with "k/n ended · ETA m:ss"; the ETA is ours, from the dashboard's clock."""

    DEFAULT_CSS = """
    BatchProgress {
        height: 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: tuple[int, int, str] | None = None

    def compose(self) -> ComposeResult:
        yield ProgressBar(show_eta=False, id="batch-bar")
        yield Label("", id="batch-label")

    def on_mount(self) -> None:
        self._bar = self.query_one(ProgressBar)
        self._label = self.query_one(Label)

    def show(self, ended: int, total: int, elapsed: float) -> None:
        left = eta(ended, total, elapsed)
        text = f"{ended}/{total} ended" + ("" if ended == total else f" · ETA {clock_time(left)}")
        if (ended, total, text) != self._shown:
            self._shown = (ended, total, text)
            self._bar.update(total=max(total, 1), progress=ended)
            self._label.update(text)
