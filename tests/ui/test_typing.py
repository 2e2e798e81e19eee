"""Typing into the dashboard: one Enter is one stream with exactly what was typed before it.

Keys are sent the way a terminal delivers a fast burst (a paste, a script, a fast typist): all
at once into the app's queue, with no pause for the app to catch up between them.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual import events
from textual.keys import _character_to_key
from textual.pilot import Pilot
from textual.widgets import Static

from tests.support.openai_server import Behaviour, OpenAIServer
from tests.ui.conftest import SIZE, all_ended, panes, wait_until
from tui.widgets.question_input import QuestionInput


def keys_of(*parts: str) -> list[str]:
    """ "one", "enter" -> the keys o, n, e, enter (a part that names a key is that key)."""
    keys: list[str] = []
    for part in parts:
        keys.extend([part] if part in ("enter", "tab", "f6") else list(part))
    return keys


def burst(pilot: Pilot, keys: Iterable[str]) -> None:
    """Send every key to the app at once, as a terminal hands over a fast burst of input."""
    app = pilot.app
    for key in keys:
        single = len(key) == 1
        name = _character_to_key(key) if single and not key.isalnum() else key
        event = events.Key(name, key if single else None)
        event.set_sender(app)
        app._driver.send_message(event)


def asked(app) -> list[str]:
    return [pane.run.job.question for pane in panes(app)]


async def test_questions_typed_fast_are_asked_one_by_one(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=4))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        burst(pilot, keys_of("one", "enter", "two", "enter", "three", "enter"))
        await wait_until(pilot, lambda: len(panes(app)) >= 3)
        await wait_until(pilot, all_ended(app))
        assert asked(app) == ["one", "two", "three"]
        assert app.dashboard.query_one(QuestionInput).value == ""


async def test_fast_questions_after_a_long_one_are_their_own(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=4))
    long_question = ("Explain the borrow checker in detail, " * 90).strip()  # over 3 KB
    assert len(long_question) > 3000
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        burst(pilot, [*long_question, "enter", *keys_of("a", "enter", "b", "enter", "c", "enter")])
        await wait_until(pilot, lambda: len(panes(app)) >= 4, timeout=30)
        await wait_until(pilot, all_ended(app), timeout=30)
        assert asked(app) == [long_question, "a", "b", "c"]


async def test_a_multi_line_paste_asks_each_line(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=4))
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press(*"What is ")
        app.post_message(events.Paste("Rust?\n\n  \nWhat is Go?\nWhat is Zig?\n"))
        await wait_until(pilot, lambda: len(panes(app)) >= 3)
        await wait_until(pilot, all_ended(app))
        assert asked(app) == ["What is Rust?", "What is Go?", "What is Zig?"]
        assert "3 questions from the paste" in [n.message for n in app._notifications]
        assert app.dashboard.query_one(QuestionInput).value == ""


async def test_a_one_line_paste_stays_in_the_input(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.post_message(events.Paste("What is Rust?\n"))
        await wait_until(pilot, lambda: app.dashboard.query_one(QuestionInput).value == "What is Rust?")
        assert panes(app) == []


async def test_typing_while_a_pane_has_focus_goes_to_the_input(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=4))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        question_input = app.dashboard.query_one(QuestionInput)
        burst(pilot, keys_of("first", "enter"))
        await wait_until(pilot, all_ended(app))
        await pilot.press("f6")
        assert app.focused is panes(app)[0]
        burst(pilot, keys_of("second question", "enter"))
        await wait_until(pilot, lambda: len(panes(app)) == 2)
        assert asked(app) == ["first", "second question"]
        assert app.focused is question_input
        assert question_input.value == ""


async def test_a_paste_while_a_pane_has_focus_goes_to_the_input(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=4))
    app = make_app(["What is Rust?"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        await pilot.press("f6")
        app.post_message(events.Paste("What is Go?"))
        question_input = app.dashboard.query_one(QuestionInput)
        await wait_until(pilot, lambda: question_input.value == "What is Go?")
        assert app.focused is question_input


async def test_the_input_names_the_program_and_its_fields(make_app):
    app = make_app()
    async with app.run_test(size=SIZE):
        title = str(app.dashboard.query_one(QuestionInput).border_title)
        assert title == "Question · predict: question → answer"
        assert isinstance(app.dashboard.query_one("#empty-hint"), Static)
