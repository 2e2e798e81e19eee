"""Behaviour of the dashboard, driven with Pilot against real streams from the loopback server."""

from __future__ import annotations

import io
import json

from rich.console import Console
from textual.widgets import Static

from tests.support.openai_server import Behaviour, OpenAIServer
from tests.ui.conftest import SIZE, all_ended, panes, settle, wait_until
from tui.report import build_report
from tui.screens.aggregate import AggregateScreen
from tui.screens.quit import QuitScreen
from tui.screens.save import SaveScreen
from tui.screens.summary import SummaryScreen
from tui.streaming.events import Cancelled, Done, Failed
from tui.widgets.markdown_view import MarkdownView
from tui.widgets.merged_log import MergedLogView
from tui.widgets.question_input import QuestionInput
from tui.widgets.stream_text import StreamText

ANSWER = "Rust is a systems programming language."


def as_text(renderable: object) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


async def ask(pilot, question: str) -> None:
    pilot.app.dashboard.query_one(QuestionInput).value = question
    await pilot.press("enter")


async def test_submit_streams_the_answer_into_a_new_pane(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(text=ANSWER))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        question_input = app.dashboard.query_one(QuestionInput)
        assert app.focused is question_input
        await ask(pilot, "What is Rust?")
        assert question_input.value == ""
        assert app.focused is question_input
        await wait_until(pilot, all_ended(app))
        await settle(pilot)
        (pane,) = panes(app)
        assert isinstance(pane.terminal, Done)
        assert pane.answer == ANSWER
        assert pane.query_one(".answer-text", StreamText).text == ANSWER
        assert pane.query_one(MarkdownView).display  # an ended answer is shown as Markdown
        # The stream's worker ends with its stream and leaves nothing behind.
        await wait_until(pilot, lambda: not [w for w in app.workers if w.group == "stream"], timeout=5)
        assert [worker.name for worker in app.workers] == []


async def test_submit_while_streaming_starts_a_second_stream(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=400, tokens_per_s=50))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, "What is Rust?")
        await wait_until(pilot, lambda: panes(app)[0].state_at(0) == "streaming")
        await ask(pilot, "What is Python?")
        await wait_until(pilot, lambda: len(panes(app)) == 2 and panes(app)[1].state_at(0) == "streaming")
        assert panes(app)[0].live, "the first stream is still going while the second starts"
        workers = {worker.name for worker in app.workers if worker.group == "stream"}
        assert workers == {"stream-1", "stream-2"}


async def test_an_empty_question_is_refused_with_a_hint(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, "   ")
        question_input = app.dashboard.query_one(QuestionInput)
        assert panes(app) == []
        assert question_input.has_class("-refused")
        assert "question is empty" in str(question_input.border_subtitle)
        await pilot.press("a")
        assert not question_input.has_class("-refused")


async def test_a_very_long_question_is_accepted_and_wraps(make_app):
    question = "Why " + "is the sky blue and " * 40 + "what about sunsets?"
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, question)
        await wait_until(pilot, all_ended(app))
        pane = panes(app)[0]
        assert pane.question == question
        assert pane.query_one(".question").size.height > 1


async def test_a_bad_model_is_one_line_not_a_traceback(make_app):
    app = make_app(model="nosuchprovider/model")
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, "What is Rust?")
        await pilot.pause()
        assert panes(app) == []
        (notification,) = app._notifications
        assert "nosuchprovider" in notification.message
        assert "\n" not in notification.message


async def test_cancel_keeps_the_partial_answer(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=400, tokens_per_s=50))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, "What is Rust?")
        pane = panes(app)[0]
        await wait_until(pilot, lambda: len(pane.answer) > 20)
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: not pane.live)
        await settle(pilot)
        assert isinstance(pane.terminal, Cancelled)
        assert pane.state_at(0) == "cancelled"
        assert pane.answer and pane.answer in pane.terminal.partial_text
        assert await openai_server.until(lambda: openai_server.disconnects == 1)


async def test_retry_after_a_failure_streams_again_in_the_same_pane(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(text=ANSWER))
    openai_server.script({"cut_after": 4})
    app = make_app(max_retries=0)
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, "What is Rust?")
        pane = panes(app)[0]
        await wait_until(pilot, lambda: not pane.live)
        await settle(pilot)
        assert isinstance(pane.terminal, Failed)
        error_line = pane.query_one(".error-line")
        assert error_line.display and pane.terminal.error in str(error_line.render())
        await pilot.press("f5")
        await wait_until(pilot, lambda: isinstance(pane.terminal, Done))
        await settle(pilot)
        assert pane.answer == ANSWER
        assert not pane.query_one(".error-line").display
        # The re-run replaces the failure everywhere: one pane, one stream, its attempts kept.
        (run,) = app.session.runs
        assert run is pane.run and run.job.stream_id == pane.number == 1
        assert [a.error != "" for a in run.record.attempts] == [True, False]
        summary = app.session.summary()
        assert (summary.streams, summary.completed, summary.failed, summary.error_rate) == (1, 1, 0, 0.0)
        assert app.exit_code() == 0
        bar = str(app.dashboard.query_one("#global-status").render())
        assert "1 done" in bar and "failed" not in bar.replace("0 failed", "")


async def test_a_re_run_of_a_cancelled_stream_is_counted_once_and_saved_under_its_number(
    make_app, openai_server: OpenAIServer, tmp_path
):
    openai_server.reset(Behaviour(tokens=400, tokens_per_s=100))
    app = make_app(["What is Rust?", "What is Python?"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(panes(app)) == 2)
        _first, second = panes(app)
        await pilot.press("f6")
        assert app.dashboard.current_pane is second
        await wait_until(pilot, lambda: len(second.answer) > 10)
        await pilot.press("ctrl+g")
        await wait_until(pilot, lambda: not second.live)
        openai_server.reset(Behaviour(text=ANSWER))
        await pilot.press("f5")
        await wait_until(pilot, lambda: isinstance(second.terminal, Done))
        await wait_until(pilot, all_ended(app))
        await settle(pilot)
        assert [run.job.stream_id for run in app.session.runs] == [1, 2]
        assert [run.metrics.state for run in app.session.runs] == ["done", "done"]
        summary = app.session.summary()
        assert (summary.streams, summary.completed, summary.cancelled) == (2, 2, 0)
        bar = str(app.dashboard.query_one("#global-status").render())
        assert "2 done" in bar and "1 cancelled" not in bar
        await pilot.press("ctrl+s")
        app.screen.query_one("#save-path").value = str(tmp_path / "session.json")
        await pilot.press("enter")
        await wait_until(pilot, lambda: (tmp_path / "session.json").exists())
    saved = json.loads((tmp_path / "session.json").read_text())
    assert [stream["stream"] for stream in saved["streams"]] == [1, 2]
    attempts = saved["streams"][1]["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert attempts[0]["error"].startswith("cancelled") and attempts[0]["text"]["answer"]
    assert attempts[1]["text"]["answer"] == ANSWER


async def test_close_pane_cancels_its_stream(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=400, tokens_per_s=40))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, "What is Rust?")
        await ask(pilot, "What is Python?")
        await wait_until(pilot, lambda: all(pane.state_at(0) == "streaming" for pane in panes(app)))
        closing = app.dashboard.current_pane
        run = closing.run
        await pilot.press("f8")
        await wait_until(pilot, lambda: run.terminal is not None)
        assert closing not in panes(app)
        assert len(panes(app)) == 1
        assert app.dashboard.current_pane is panes(app)[0]
        assert isinstance(run.terminal, Cancelled)
        assert await openai_server.until(lambda: openai_server.disconnects >= 1)


async def test_layout_switches_between_grid_and_one_pane_maximised(make_app):
    app = make_app(["What is Rust?", "What is Python?"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(panes(app)) == 2)
        first, second = panes(app)
        assert app.dashboard.current_pane is first
        await pilot.press("f2")
        assert app.dashboard.maximized is first
        await pilot.press("f6")  # the next pane takes the maximised place
        assert app.dashboard.maximized is second
        await pilot.press("f2")
        assert app.dashboard.maximized is None


async def test_aggregate_view_merges_streams_with_tags(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(text=ANSWER))
    app = make_app(["What is Rust?", "What is Python?"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        await pilot.press("f3")
        assert isinstance(app.screen, AggregateScreen)
        await settle(pilot)
        text = app.screen.query_one(MergedLogView).text
        for number in (1, 2):
            assert f"[Stream {number}] {ANSWER}" in text
            assert f"[Stream {number}] ✓ done" in text
        await pilot.press("f3")
        assert app.screen is app.dashboard


async def test_aggregate_mode_opens_in_the_merged_view(make_app):
    app = make_app(["What is Rust?"], mode="aggregate")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, AggregateScreen))


async def test_save_session_as_json_and_markdown_without_keys(make_app, openai_server, tmp_path, monkeypatch):
    secret = "sk-proj-THISISASECRETKEY1234567890"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    openai_server.reset(Behaviour(text=ANSWER))
    app = make_app(["What is Rust?"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        for name in ("session.json", "session.md"):
            await pilot.press("ctrl+s")
            assert isinstance(app.screen, SaveScreen)
            app.screen.query_one("#save-path").value = str(tmp_path / name)
            await pilot.press("enter")
            await pilot.pause()
    saved = json.loads((tmp_path / "session.json").read_text())
    (stream,) = saved["streams"]
    assert stream["question"] == "What is Rust?"
    assert stream["answer"] == ANSWER
    assert stream["figures"]["output_len"] > 0 and stream["attempts"][0]["text"]["answer"] == ANSWER
    assert saved["settings"]["model"] == "openai/test-model"
    # One set of figures: the saved session's summary is the report's, by the report's names.
    report = build_report(app.session)
    assert saved["summary"] == {name: report[name] for name in saved["summary"]}
    assert saved["summary"]["completed"] == 1 and saved["summary"]["mean_ttft_ms"] > 0
    markdown = (tmp_path / "session.md").read_text()
    assert "What is Rust?" in markdown and ANSWER in markdown
    for text in (markdown, (tmp_path / "session.json").read_text()):
        assert secret not in text and "OPENAI_API_KEY" not in text


async def test_a_key_in_an_answer_is_never_on_screen_even_split_across_tokens(make_app, openai_server):
    """The answer streams three characters a token; at no frame does any view show the key, or
    its start, while the rest of the answer streams in whole."""
    secret = "sk-proj-THISISASECRETKEY1234567890"
    answer = f"Your key is {secret} and that is all."
    openai_server.reset(Behaviour(text=answer, token_chars=3, token_delay=0.05))
    app = make_app(["What is my key?"])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")  # the merged view follows every stream too
        shown: list[str] = []
        while not (panes(app) and all_ended(app)()):
            merged = app.screen.query(MergedLogView)
            texts = [pane.answer for pane in panes(app)] + [view.text for view in merged]
            shown.extend(texts)
            assert not any("sk-proj" in text for text in texts), texts
            await pilot.pause(0.02)
        await pilot.press("f3")
        await settle(pilot)
        (pane,) = panes(app)
        assert pane.answer == "Your key is sk-… and that is all."
        assert any("Your key is" in text for text in shown)  # it was watched while it streamed
        assert secret not in pane.query_one(MarkdownView).source


async def test_quit_with_live_streams_asks_then_cancels_them(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=400, tokens_per_s=40))
    app = make_app(["What is Rust?", "What is Python?"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(panes(app)) == 2 and panes(app)[1].state_at(0) == "streaming")
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, QuitScreen)
        await pilot.press("escape")  # keep streaming
        assert app.screen is app.dashboard and all(pane.live for pane in panes(app))
        await pilot.press("ctrl+q")
        await pilot.click("#quit-yes")
        await wait_until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 130 and app.return_value == 130
    assert all(isinstance(run.terminal, Cancelled) for run in app.session.runs)


async def test_quit_with_nothing_live_exits_at_once(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
    assert app.return_code == 0


async def test_twenty_panes_stream_at_once(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=30, tokens_per_s=100))
    questions = [f"Question number {n}?" for n in range(1, 21)]
    app = make_app(questions, concurrency=20)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_until(pilot, lambda: len(panes(app)) == 20)
        await wait_until(pilot, all_ended(app), timeout=30)
        await settle(pilot)
        assert all(isinstance(pane.terminal, Done) for pane in panes(app))
        assert [pane.question for pane in panes(app)] == questions
        assert app.dashboard.query_one("#batch-label").render().plain == "20/20 ended"


async def test_markup_and_escapes_in_an_answer_are_shown_literally(make_app, openai_server: OpenAIServer):
    hostile = "[bold red]x[/] \x1b[2J\x1b]0;pwned\x07 tab\tend \x9b31m"
    openai_server.reset(Behaviour(text=hostile))
    app = make_app(["Say something nasty"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        await settle(pilot)
        pane = panes(app)[0]
        shown = pane.query_one(".answer-text", StreamText).text
        assert "[bold red]x[/]" in shown
        assert "␛[2J" in shown and "␛]0;pwned␇" in shown
        assert not any(0x00 <= ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in shown)
        screen_text = "\n".join(
            "".join(segment.text for segment in app.screen._compositor.render_update(full=True).strips[y])
            for y in range(SIZE[1])
        )
        assert "[bold red]x[/]" in screen_text
        assert "\x1b" not in screen_text and "\x07" not in screen_text


async def test_summary_shows_the_run_figures(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(text=ANSWER))
    app = make_app(["What is Rust?", "What is Python?"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        await pilot.press("f4")
        assert isinstance(app.screen, SummaryScreen)
        latency = as_text(app.screen.query_one("#summary-latency", Static).content)
        totals = as_text(app.screen.query_one("#summary-totals", Static).content)
        for figure in ("TTFT", "TPOT", "ITL", "E2EL"):
            assert figure in latency
        assert "output throughput" in totals and "error rate" in totals
        scale = str(app.screen.query_one("#sparkline-title", Static).render())
        assert "(lowest)" in scale and "(peak)" in scale and "tok/s" in scale  # the sparkline has a scale
        await pilot.press("f4")
        assert app.screen is app.dashboard


async def test_bindings_are_in_the_command_palette(make_app):
    app = make_app()
    async with app.run_test(size=SIZE):
        titles = [command.title for command in app.get_system_commands(app.dashboard)]
    for action in (
        "Cancel",
        "Retry",
        "Close",
        "Next",
        "Max",
        "Copy",
        "Merged",
        "Summary",
        "Table",
        "Save",
        "Help",
    ):
        assert any(title.startswith(action) for title in titles), action


async def test_copy_puts_the_current_answer_on_the_clipboard(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(text=ANSWER))
    app = make_app(["What is Rust?"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        await pilot.press("ctrl+y")
        assert app.clipboard == ANSWER


async def test_a_clock_tick_during_shutdown_finds_no_screen_and_does_nothing(make_app):
    # The clock's timers can fire once more after the last screen is gone (seen as a
    # ScreenStackError traceback at quit on a busy machine).
    app = make_app()
    async with app.run_test(size=SIZE):
        pass
    assert not app._screen_stack
    app._tick()
    app._sample()


async def test_with_many_streams_on_screen_panes_take_turns_drawing_their_text(openai_server: OpenAIServer):
    """More than BUSY_PANES streams in view: a tick draws the new text of half the panes (and of
    the current one), the next tick the other half; nothing is left undrawn."""
    from tests.ui.conftest import frozen_clock, server_settings
    from tui.app import StreamDashboard
    from tui.screens.dashboard import BUSY_PANES
    from tui.streaming.session import StreamSession

    count = BUSY_PANES + 4
    openai_server.reset(Behaviour(tokens=60, stall_after=8, stall_timeout=60))
    settings = server_settings(openai_server, concurrency=count)
    questions = [f"question {n}" for n in range(count)]
    # A clock that does not tick by itself: the test ticks the dashboard.
    app = StreamDashboard(
        settings, questions, session=StreamSession(settings), clock=frozen_clock, steady=True, tick_hz=0.001
    )
    async with app.run_test(size=(200, 100)) as pilot:
        await wait_until(pilot, lambda: len(panes(app)) == count and all(p.has_pending for p in panes(app)))
        await wait_until(
            pilot, lambda: sum(r.outcome == "stalled" for r in openai_server.completions) == count
        )
        await wait_until(pilot, lambda: all(pane.run.queue.empty() for pane in panes(app)))  # all read
        dashboard = app.dashboard
        dashboard.tick(frozen_clock())
        waiting = [pane for pane in panes(app) if pane.has_pending]
        assert 0 < len(waiting) < count  # some drew, some wait their turn
        assert all(not pane.current for pane in waiting)  # the current pane draws every tick
        dashboard.tick(frozen_clock())
        assert not any(pane.has_pending for pane in panes(app))
