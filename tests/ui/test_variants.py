"""Variants in the dashboard: a column per variant, a row per question, and the compare table.

Real streams (DSPy against the loopback server), one in-process session per variant; the
third variant's model is rate-limited by the server, and with no retries its streams fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from textual.widgets import Static

from tests.support.openai_server import Behaviour, OpenAIServer
from tests.ui.conftest import SIZE, all_ended, frozen_clock, panes, server_settings, settle, wait_until
from tui.app import StreamDashboard
from tui.screens.summary import SummaryScreen
from tui.screens.table import TableScreen
from tui.streaming.session import StreamSession
from tui.streaming.variants import VariantSession, variant_labels
from tui.transcript import session_dict
from tui.widgets.pane_grid import PaneGrid
from tui.widgets.stream_table import StreamTable

MODELS = ("openai/alpha", "openai/beta", "openai/fault:429")
QUESTIONS = ["What is Rust?", "What is Go?"]


def compare_app(
    server: OpenAIServer, questions: Sequence[str] = QUESTIONS, **changes: object
) -> StreamDashboard:
    server.reset(Behaviour(tokens=12))
    base = server_settings(server, max_retries=0, **changes)
    each = [base.replace(model=model) for model in MODELS]
    session = VariantSession(
        base, [(label, StreamSession(s)) for label, s in zip(variant_labels(each), each, strict=True)]
    )
    return StreamDashboard(base, questions, session=session, clock=frozen_clock, steady=True)


def _text(widget: Static) -> str:
    return str(widget.render())


async def test_a_row_per_question_and_a_column_per_variant(openai_server):
    app = compare_app(openai_server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        grid = app.dashboard.query_one(PaneGrid)
        assert grid.columns == 3
        shown = [(p.run.job.question_no, p.run.job.variant, p.run.job.question) for p in panes(app)]
        assert shown == [
            (q, label, question)
            for q, question in enumerate(QUESTIONS, 1)
            for label in ("alpha", "beta", "fault:429")
        ]
        states = [p.run.metrics.state for p in panes(app)]
        assert states == ["done", "done", "failed"] * 2  # the rate limit touched its own column only
        assert "429" in panes(app)[2].run.metrics.error
        bar = _text(app.dashboard.query_one("#variants-bar", Static))
        assert "alpha" in bar and "beta" in bar and "fault:429" in bar
        # The table names each stream's variant; a saved session keeps it, with a summary per variant.
        await pilot.press("f7")
        await wait_until(pilot, lambda: isinstance(app.screen, TableScreen))
        table = app.screen.query_one(StreamTable)
        assert [c.key for c in table.shown_columns][:2] == ["id", "variant"]
        labels = ["alpha", "beta", "fault:429"]
        assert [table.values[n]["variant"] for n in sorted(table.values)] == labels * 2
        await pilot.press("escape")
        saved = session_dict(app.session, app.settings, datetime.now())
        assert list(saved["variants"]) == ["alpha", "beta", "fault:429"]
        assert saved["variants"]["fault:429"]["failed"] == 2
        assert [(s["question_no"], s["variant"]) for s in saved["streams"]][:3] == [
            (1, "alpha"), (1, "beta"), (1, "fault:429"),
        ]  # fmt: skip
        # F2: the current question's row alone; F2 again: every row.
        panes(app)[4].focus()
        await pilot.press("f2")
        assert [p.display for p in panes(app)] == [False] * 3 + [True] * 3
        await pilot.press("f2")
        assert all(p.display for p in panes(app))
        # F8 closes a whole row: the columns stay the variants.
        panes(app)[1].focus()
        await pilot.press("f8")
        await wait_until(pilot, lambda: len(panes(app)) == 3)
        assert [p.run.job.question_no for p in panes(app)] == [2, 2, 2]


async def test_the_compare_table_marks_the_best_of_each_column(openai_server):
    app = compare_app(openai_server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        rows = app.compare_rows()
        assert [rows[label]["done"] for label in rows] == [2, 2, 0]
        assert [rows[label]["failed"] for label in rows] == [0, 0, 2]
        assert rows["alpha"]["tokens"] == rows["beta"]["tokens"] > 0 == rows["fault:429"]["tokens"]
        await pilot.press("f4")
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen))
        table = app.screen.query_one("#compare-table", Static)
        lines = [line for line in _text_of(table).splitlines() if line.strip()]
        alpha = next(line for line in lines if line.strip().startswith("alpha"))
        storm = next(line for line in lines if line.strip().startswith("fault:429"))
        assert alpha.count("★") >= 2  # most done, fewest failed
        assert "★" not in storm


def _text_of(widget: Static) -> str:
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(widget.content)
    return console.export_text()


def test_snapshot_of_the_compare_grid(snap_compare, openai_server):
    app = compare_app(openai_server)

    async def run_before(pilot) -> None:
        await wait_until(pilot, all_ended(app))
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_snapshot_of_the_compare_screen(snap_compare, openai_server):
    app = compare_app(openai_server)

    async def run_before(pilot) -> None:
        await wait_until(pilot, all_ended(app))
        await settle(pilot)
        await pilot.press("f4")
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_on_a_narrow_terminal_the_compare_table_turns_a_column_per_variant(openai_server):
    app = compare_app(openai_server)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, all_ended(app))
        await pilot.press("f4")
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen))
        text = _text_of(app.screen.query_one("#compare-table", Static))
        lines = [line.split() for line in text.splitlines() if line.strip()]
        assert lines[0] == ["figure", "alpha", "beta", "fault:429"]
        done = next(line for line in lines if line[0] == "done")
        assert done == ["done", "★", "2", "★", "2", "0"]
