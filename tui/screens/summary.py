"""SummaryScreen: the run's figures (TTFT, TPOT, ITL, E2EL, throughput, errors, retries) and tokens/s."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Sparkline, Static

from tui.streaming.figures import DASH, millis, rate, seconds, usd
from tui.streaming.metrics import Distribution, RunSummary
from tui.widgets.compare_table import BEST_MARK, compare_table

FIGURES = (
    ("TTFT", "time to first token", "ttft"),
    ("TTFO", "time to first token of the final output field", "ttfo"),
    ("TPOT", "time per output token", "tpot"),
    ("ITL", "inter-token latency", "itl"),
    ("E2EL", "end-to-end latency", "e2el"),
)


def latency_table(summary: RunSummary) -> Table:
    table = Table(expand=False, box=None, padding=(0, 2), header_style="bold")
    table.add_column("figure")
    for column in ("mean", "median", "p99", "samples"):
        table.add_column(column, justify="right")
    for name, description, attribute in FIGURES:
        figures: Distribution = getattr(summary, attribute)
        values = figures.as_dict()
        cells = [millis(values.get(key)) if values else DASH for key in ("mean", "median", "p99")]
        table.add_row(f"{name} [dim]{description}[/dim]", *cells, str(len(figures.values)))
    return table


def totals_table(summary: RunSummary) -> Table:
    table = Table(expand=False, box=None, padding=(0, 2), show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = (
        ("streams", f"{summary.streams}"),
        ("done · failed · cancelled", f"{summary.completed} · {summary.failed} · {summary.cancelled}"),
        ("error rate", f"{summary.error_rate:.0%}"),
        ("retries", f"{summary.retries}"),
        ("output tokens (streamed chunks)", f"{summary.total_tokens:,}"),
    )
    if summary.total_input_tokens is not None or summary.total_provider_output_tokens is not None:
        tokens = (summary.total_input_tokens, summary.total_provider_output_tokens)
        shown = " · ".join(DASH if n is None else f"{n:,}" for n in tokens)
        rows += (("provider tokens in · out", shown),)
    if summary.total_cost_usd is not None:  # nothing, not $0, where no price is known
        rows += (("cost", usd(summary.total_cost_usd)),)
    rows += (
        ("duration", seconds(summary.duration)),
        ("request throughput", rate(summary.request_throughput, "req/s")),
        ("output throughput", rate(summary.output_throughput)),
    )
    for label, value in rows:
        table.add_row(label, value)
    return table


def sparkline_scale(samples: Sequence[float]) -> str:
    """The sparkline's scale: Textual draws its bars from the lowest sample to the highest."""
    return (
        f"Total tokens/s, one sample a second, last {len(samples)} s"
        f" · bars from {rate(min(samples))} (lowest) to {rate(max(samples))} (peak) · now {rate(samples[-1])}"
    )


class SummaryScreen(Screen[None]):
    """Refreshed by the app once a second from `StreamSession.summary()`."""

    BINDINGS = [
        Binding("f4,escape", "app.pop_screen", "Panes", tooltip="Back to the panes"),
    ]

    def __init__(
        self,
        summarize: Callable[[], RunSummary],
        throughput: Sequence[float],
        *,
        compare: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
        goodput: bool = False,
    ) -> None:
        """`compare`: with variants, their compare table's rows (`tui.streaming.compare`)."""
        super().__init__(id="summary")
        self.summarize = summarize
        self.throughput = throughput
        self.compare = compare
        self.goodput = goodput

    def compose(self) -> ComposeResult:
        if self.compare is not None:
            yield Static(f"Compare · {BEST_MARK} best in its column", id="compare-title")
            yield Static(id="compare-table")
        yield Static("Run summary", id="summary-title")
        yield Static(id="summary-totals")
        yield Static(id="summary-latency")
        yield Static("Total tokens/s, one sample a second", id="sparkline-title")
        yield Sparkline([], summary_function=max, id="throughput")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        # Looked up once: the sampler may refresh this screen while the app takes it down at exit.
        self._compare_table = self.query_one("#compare-table", Static) if self.compare is not None else None
        self._totals = self.query_one("#summary-totals", Static)
        self._latency = self.query_one("#summary-latency", Static)
        self._sparkline = self.query_one(Sparkline)
        self._sparkline_title = self.query_one("#sparkline-title", Static)
        self.refresh_figures()

    def on_resize(self) -> None:
        self.refresh_figures()  # the compare table turns on a narrow terminal

    def refresh_figures(self) -> None:
        if self.compare is not None and self._compare_table is not None:
            width = self.app.size.width
            self._compare_table.update(compare_table(self.compare(), goodput=self.goodput, width=width))
        summary = self.summarize()
        self._totals.update(totals_table(summary))
        self._latency.update(latency_table(summary))
        samples = list(self.throughput) or [0.0]
        self._sparkline.data = samples
        self._sparkline_title.update(sparkline_scale(samples))
