"""Keyboard scrolling, footers with only working keys, the table view, small terminals, off-screen news."""

from __future__ import annotations

import pytest
from textual.widgets import Footer

from tests.support.openai_server import Behaviour, OpenAIServer
from tests.ui.conftest import SIZE, all_ended, panes, settle, wait_until
from tui.screens.aggregate import AggregateScreen
from tui.screens.summary import SummaryScreen
from tui.screens.table import TableScreen
from tui.widgets.global_status import GlobalStatusBar, short_model
from tui.widgets.merged_log import MergedLogView
from tui.widgets.stream_table import StreamTable
from tui.widgets.stream_text import StreamText

LONG = "".join(f"line {n}\n\n" for n in range(300))


def footer_keys(app) -> set[str]:
    """The keys the current screen's footer offers."""
    footer = app.screen.query_one(Footer)
    return {key.key for key in footer.query("FooterKey")}


def bar_text(app) -> str:
    return str(app.screen.query_one(GlobalStatusBar).render())


def shown_view(pane):
    """The answer's view on screen: Markdown for the current pane, plain text elsewhere."""
    return pane._markdown if pane._showing_markdown else pane.query_one(".answer-text", StreamText)


async def test_a_focused_pane_scrolls_by_keyboard_and_end_follows_again(
    make_app, openai_server: OpenAIServer
):
    openai_server.reset(
        Behaviour(text=LONG, raw=True, tokens_per_s=15)
    )  # live throughout, even on a slow machine
    app = make_app(["Count?"], adapter="plain")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(panes(app)) == 1)
        pane = panes(app)[0]
        # More than a page below the third line: PageDown must not reach the end (which follows again).
        # The current pane shows Markdown once it has caught up with the text: scroll that view.
        await wait_until(
            pilot,
            lambda: pane._showing_markdown and pane._markdown.max_scroll_y > pane._markdown.size.height + 12,
        )
        pane.focus()
        await pilot.pause()
        assert app.focused is pane
        view = shown_view(pane)
        await pilot.press("home")
        await wait_until(pilot, lambda: view.scroll_y == 0)
        await pilot.press("down", "down")
        await wait_until(pilot, lambda: view.scroll_y == 2)
        await pilot.press("pagedown")
        await wait_until(pilot, lambda: view.scroll_y > 2)
        stopped_at = view.scroll_y
        await wait_until(pilot, lambda: view.max_scroll_y > stopped_at + 10)
        assert view.scroll_y == stopped_at, "scrolled up, the view stays where the reader is"
        await pilot.press("end")
        grown_to = view.max_scroll_y
        await wait_until(pilot, lambda: view.max_scroll_y > grown_to + 5)
        await pilot.pause()
        assert view.scroll_y == view.max_scroll_y, "after End the view follows the stream again"
        pane.cancel()
        await wait_until(pilot, all_ended(app))


async def test_the_merged_view_scrolls_by_keyboard_and_shows_each_question(
    make_app, openai_server: OpenAIServer
):
    openai_server.reset(Behaviour(text=LONG, raw=True))
    app = make_app(["Count for me?"], adapter="plain")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        await pilot.press("f3")
        assert isinstance(app.screen, AggregateScreen)
        view = app.screen.query_one(MergedLogView)
        await settle(pilot)
        assert "[Stream 1] asks: Count for me?" in view.text.splitlines()[0]
        view.focus()
        await pilot.pause()
        await pilot.press("home")
        assert view.scroll_y == 0
        await pilot.press("pagedown", "down")
        assert view.scroll_y > 1
        await pilot.press("end")
        assert view.scroll_y == view.max_scroll_y


async def test_each_footer_offers_only_keys_that_work_there(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=10))
    app = make_app(["What is Rust?"])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, all_ended(app))
        dashboard_keys = footer_keys(app)
        assert {"f3", "f4", "f7", "f5", "ctrl+g", "f2", "f1", "ctrl+s", "ctrl+q"} <= dashboard_keys
        for key, screen in (("f4", SummaryScreen), ("f3", AggregateScreen), ("f7", TableScreen)):
            await pilot.press(key)
            assert isinstance(app.screen, screen)
            offered = footer_keys(app)
            assert key in offered  # the way back
            for other in {"f3", "f4", "f7", "f5", "ctrl+g", "f2"} - {key}:
                assert other not in offered, f"{screen.__name__} offers {other}, which does nothing there"
            for shown in offered - {"ctrl+q", "f1", "ctrl+s"}:
                assert app.screen.active_bindings.get(shown) is not None
            await pilot.press(key)
            assert app.screen is app.dashboard


@pytest.mark.parametrize(
    ("size", "expected"),
    [((160, 40), "1 done · 2 failed · 0 cancelled"), ((80, 24), "1✓ 2✗"), ((60, 20), "1✓ 2✗")],
)
async def test_the_header_keeps_the_counts_whole_at_any_width(make_app, openai_server, size, expected):
    openai_server.reset(Behaviour(tokens=10))
    openai_server.script({"status": 400}, {"status": 400})
    app = make_app(["one?", "two?", "three?"], concurrency=1, max_retries=0)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, all_ended(app))
        await wait_until(pilot, lambda: expected in bar_text(app))
        text = bar_text(app)
        assert "…" not in text and len(text) <= size[0] - 2, "nothing cut: the short forms fit"


def test_a_narrow_header_names_one_model_short_and_several_by_their_count():
    assert short_model("openai/gpt-4o-mini") == "gpt-4o-mini"
    assert short_model("openai/gpt-4o-mini, anthropic/claude-3-5-haiku-latest") == "2 models"
    assert short_model("openai/" + "x" * 40) == "x" * 23 + "…"  # cut, and said to be


async def test_a_failure_off_screen_is_counted_and_notified(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=400, tokens_per_s=50))
    # The twelfth request fails, after a while: time for the view to go back to stream 1.
    openai_server.script(*([{}] * 11), {"status": 400, "response_delay": 2.0})
    questions = [f"Question {n}?" for n in range(1, 12)]
    app = make_app(questions, concurrency=12, max_retries=0)
    async with app.run_test(size=(80, 24)) as pilot:
        # The twelfth asked once the eleven have reached the server: its request is the twelfth.
        await wait_until(pilot, lambda: len(openai_server.requests) >= 11)
        app.dashboard.ask(["Question 12?"])
        await wait_until(pilot, lambda: len(panes(app)) == 12)
        app.dashboard.open_stream(1)  # a new question's pane comes into view: this one goes out
        await wait_until(pilot, lambda: any(p.terminal is not None for p in panes(app)))
        (failed,) = [p for p in panes(app) if p.terminal is not None]
        assert failed not in app.dashboard._compositor.visible_widgets
        await wait_until(pilot, lambda: "⚠" in bar_text(app))
        assert "⚠ 1 off screen" in bar_text(app)
        messages = [n.message for n in app._notifications]
        assert sum(f"Stream {failed.number} failed off screen" in m for m in messages) == 1, messages
        app.dashboard.open_stream(failed.number)  # brought into view: no longer counted
        await wait_until(pilot, lambda: "⚠" not in bar_text(app))
        for pane in panes(app):
            pane.cancel()
        await wait_until(pilot, all_ended(app))
        assert sum(f"Stream {failed.number} failed" in n.message for n in app._notifications) == 1


async def test_the_table_shows_64_streams_sorts_and_opens_one(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=20))
    questions = [f"Question number {n}: {'x' * n}" for n in range(1, 65)]
    app = make_app(questions, concurrency=16)
    async with app.run_test(size=(160, 72)) as pilot:
        await wait_until(pilot, lambda: len(panes(app)) == 64)
        await wait_until(pilot, all_ended(app), timeout=60)
        await pilot.press("f7")
        assert isinstance(app.screen, TableScreen)
        table = app.screen.query_one(StreamTable)
        await wait_until(pilot, lambda: table.row_count == 64)
        assert table.virtual_size.height <= table.size.height, "64 streams on one screen"
        first_row = [str(cell) for cell in table.get_row_at(0)]
        assert first_row[0].strip() == "1" and first_row[2] == "done" and first_row[3] == "20"
        await pilot.click(StreamTable, offset=(8, 0))  # the question header: sorted by question
        assert table.sort_column == "question"
        ids = [int(str(table.get_row_at(i)[0])) for i in range(64)]
        assert ids == sorted(range(1, 65), key=lambda n: questions[n - 1])
        table.move_cursor(row=ids.index(42))
        await pilot.press("enter")
        assert app.screen is app.dashboard
        assert app.dashboard.current_pane.number == 42 and app.focused is app.dashboard.current_pane


async def test_streams_waiting_for_a_slot_are_counted_queued_and_say_so_in_the_table(make_app, openai_server):
    openai_server.reset(Behaviour(tokens=400, tokens_per_s=40))
    app = make_app(["one?", "two?", "three?"], concurrency=1)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_until(pilot, lambda: "3 active" in bar_text(app) and "2 queued" in bar_text(app))
        await pilot.press("f7")
        table = app.screen.query_one(StreamTable)
        await wait_until(pilot, lambda: table.row_count == 3)
        await wait_until(pilot, lambda: [str(table.get_row_at(i)[2]) for i in (1, 2)] == ["queued: slot"] * 2)
        for pane in panes(app):
            pane.cancel()
        await wait_until(pilot, all_ended(app))


async def test_the_palette_screenshot_falls_back_to_the_current_directory(make_app, tmp_path, monkeypatch):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))  # a home without ~/Downloads
    monkeypatch.delenv("XDG_DOWNLOAD_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.chdir(work)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.deliver_screenshot()
        # Until the delivery is told complete: the saving thread then reports to the app, and
        # an app closed before that leaves the thread failing on a closed loop.
        await wait_until(pilot, lambda: any(n.title == "Screenshot" for n in app._notifications), timeout=10)
        assert any(work.glob("*.svg"))
    assert not (home / "Downloads").exists()


async def test_a_maximised_pane_stays_under_the_bars(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=10))
    app = make_app(["What is Rust?", "What is Python?"])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: len(panes(app)) == 2)
        await pilot.press("f2")
        await pilot.pause()
        pane = app.dashboard.maximized
        assert pane is panes(app)[0]
        bar = app.dashboard.query_one(GlobalStatusBar)
        assert bar.region.y == 0, "the global bar stays on top"
        assert pane.region.y > bar.region.y and pane.region.width >= 78
