"""The user's own program in the dashboard: an entry form for several inputs, a section per output
field, the timeline of a ReAct run, and the provider's figures. Real DSPy programs, real streams
from the loopback server (which answers every field a ChatAdapter prompt asks for, typed)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from tests.support.openai_server import Behaviour, OpenAIServer
from tests.ui.conftest import SIZE, all_ended, panes, server_settings, settle, wait_until
from tui.app import StreamDashboard
from tui.engine.remote import RemoteSession
from tui.screens.help import HelpScreen
from tui.screens.summary import SummaryScreen, latency_table, totals_table
from tui.streaming.events import Done
from tui.widgets.entry_form import EntryForm
from tui.widgets.field_section import FieldSection, TimelineBlock, format_value
from tui.widgets.question_input import QuestionInput
from tui.widgets.stream_status import StreamStatus

PROGRAMS = Path(__file__).parents[1] / "programs"
SAMPLES = PROGRAMS / "sample_programs.py"
TOOLS = PROGRAMS / "sample_tools.py"
TWO_INPUTS = "context, question -> answer"
MULTI_OUTPUT = "question -> title, answer, confidence: float"


def as_text(renderable: object) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def status_of(pane) -> str:
    return str(pane.query_one(StreamStatus).render())


def trail(pane) -> list[tuple[str, str]]:
    """The pane's trail, top to bottom: (field key or "timeline", its text)."""
    blocks = []
    for block in pane._trail.children:
        if isinstance(block, FieldSection):
            blocks.append((block.key, block.text))
        elif isinstance(block, TimelineBlock):
            blocks.append(("timeline", block.text))
    return blocks


async def test_the_entry_form_has_a_box_per_input_and_asks_with_all(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=4))
    app = make_app(signature=TWO_INPUTS)
    async with app.run_test(size=SIZE) as pilot:
        form = app.dashboard.query_one(EntryForm)
        context, question = form.inputs
        assert (context.field, question.field) == ("context", "question")
        assert not app.dashboard.query("#question")  # no single question box beside the form
        assert app.focused is context
        assert "context, question → answer" in str(context.border_title)
        assert str(question.border_title) == "question"
        await pilot.press(*"Rust is a systems language.", "tab")
        assert app.focused is question
        await pilot.press(*"What is Rust?", "enter")
        await wait_until(pilot, all_ended(app))
        (pane,) = panes(app)
        context_text = "Rust is a systems language."
        assert dict(pane.run.job.inputs) == {"context": context_text, "question": "What is Rust?"}
        sent = openai_server.completions[-1].body.decode()
        assert "Rust is a systems language." in sent and "What is Rust?" in sent
        assert isinstance(pane.terminal, Done)
        # The values stay: the next question changes only what differs.
        assert (context.value, question.value) == ("Rust is a systems language.", "What is Rust?")
        await pilot.press(*"Why?", "enter")  # the asked value is selected: typing replaces it
        await wait_until(pilot, lambda: len(panes(app)) == 2)
        assert dict(panes(app)[1].run.job.inputs) == {"context": context_text, "question": "Why?"}
        await wait_until(pilot, all_ended(app))


async def test_the_entry_form_points_at_a_missing_field(make_app):
    app = make_app(signature=TWO_INPUTS)
    async with app.run_test(size=SIZE) as pilot:
        context, question = app.dashboard.query_one(EntryForm).inputs
        question.focus()
        await pilot.press(*"What is Rust?", "enter")
        await pilot.pause()
        assert panes(app) == []
        assert context.has_class("-refused") and not question.has_class("-refused")
        assert "context" in str(context.border_subtitle)
        assert app.focused is context
        await pilot.press("x")
        assert not context.has_class("-refused")


async def test_the_help_names_the_program_and_its_fields(make_app):
    app = make_app(signature=MULTI_OUTPUT)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = app.screen.text
        assert "`predict`: `question → title, answer, confidence: float`" in text
        assert "inputs: `question`" in text and "`confidence` (float)" in text


async def test_each_output_field_streams_into_its_own_section(make_app, openai_server: OpenAIServer):
    fields = {"title": "Rust in brief", "answer": "Rust is a systems language.", "confidence": "0.75"}
    openai_server.reset(Behaviour(fields=fields))
    app = make_app(["What is Rust?"], signature=MULTI_OUTPUT)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        await settle(pilot)
        (pane,) = panes(app)
        assert pane.final_key == "answer"
        assert pane.answer == "Rust is a systems language."
        # title streamed first, in its own section; the float arrives with the Prediction
        assert trail(pane) == [("title", "Rust in brief"), ("confidence", "0.75")]
        assert pane.query_one(".answer-label").display
        assert str(pane.query_one(".answer-label").render()) == "answer"


async def test_a_single_answer_has_no_trail_and_no_label(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(text="Rust is a systems language."))
    app = make_app(["What is Rust?"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        await settle(pilot)
        (pane,) = panes(app)
        assert trail(pane) == [] and not pane._trail.display
        assert not pane.query_one(".answer-label").display


async def test_field_text_is_shown_literally(make_app, openai_server: OpenAIServer):
    fields = {"title": "[bold red]x[/] \x1b[2J", "answer": "ok", "confidence": "0.5"}
    openai_server.reset(Behaviour(fields=fields))
    app = make_app(["What?"], signature=MULTI_OUTPUT)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        await settle(pilot)
        (_key, text), _ = trail(panes(app)[0])
        assert text == "[bold red]x[/] ␛[2J"


async def test_what_a_program_prints_in_a_worker_is_on_its_panes_timeline(openai_server, tmp_path):
    openai_server.reset(Behaviour(text="the answer"))
    program = tmp_path / "printing.py"
    program.write_text(
        "import dspy\n\nclass Printing(dspy.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.step = dspy.Predict('question -> answer')\n\n    def forward(self, question):\n"
        "        print('[bold]asked[/]', question)\n        return self.step(question=question)\n"
    )
    settings = server_settings(openai_server, program=str(program))
    session = RemoteSession(settings, workers=1)
    app = StreamDashboard(settings, ["Rust?", "Go?"], session=session, steady=True)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, all_ended(app), timeout=60)
            await settle(pilot)
            for pane, question in zip(panes(app), ["Rust?", "Go?"], strict=True):
                assert isinstance(pane.terminal, Done), pane.terminal
                assert ("timeline", f"» [bold]asked[/] {question}") in trail(pane)  # literal, as printed
                assert pane.answer == "the answer"
    finally:
        session.close()


async def test_a_react_run_reads_as_a_timeline(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=6))
    app = make_app(["What is Rust times two?"], program="react", tools=str(TOOLS))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app), timeout=30)
        await settle(pilot)
        (pane,) = panes(app)
        assert isinstance(pane.terminal, Done), pane.terminal
        blocks = trail(pane)
        kinds = [key for key, _ in blocks]
        # thought, tool call and its observation, thought, the next tool, ..., then the answer
        assert kinds[:4] == ["timeline", "next_thought", "timeline", "next_thought"], blocks
        timeline = "\n".join(text for key, text in blocks if key == "timeline")
        calls = [line for line in timeline.splitlines() if line.startswith("→ ")]
        assert [call.split("(")[0] for call in calls] == ["→ lookup", "→ multiply"]
        assert "← " in timeline
        assert pane.answer
        # every thought streamed into the trail equals the trajectory's
        thoughts = [text for key, text in blocks if key == "next_thought"]
        trajectory = pane.terminal.prediction.trajectory
        assert thoughts == [trajectory[f"thought_{i}"] for i in range(len(thoughts))]


async def test_the_status_line_and_summary_show_provider_figures(make_app, openai_server: OpenAIServer):
    # Paced: unpaced, title and answer can arrive in one read, and TTFO then equals TTFT (not shown).
    fields = {"title": "Rust", "answer": "A language.", "confidence": "0.5"}
    openai_server.reset(Behaviour(fields=fields, token_delay=0.01))
    app = make_app(["What is Rust?"], signature=MULTI_OUTPUT)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        await settle(pilot)
        (pane,) = panes(app)
        metrics = pane.run.metrics
        assert metrics.input_tokens and metrics.provider_output_tokens
        line = status_of(pane)
        assert f"in {metrics.input_tokens:,} · out {metrics.provider_output_tokens:,}" in line, line
        # title streams before answer: the final field's first token comes later than the first
        assert "TTFT" in line and "TTFO" in line, line
        assert line.index("TTFT") < line.index("TTFO")
        assert "$" not in line, "the loopback model has no price: no cost, never $0"
        await pilot.press("f4")
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen))
        summary = app.session.summary()
        totals = as_text(totals_table(summary))
        assert "provider tokens in · out" in totals and f"{summary.total_input_tokens:,}" in totals
        assert "cost" not in totals
        assert "TTFO" in as_text(latency_table(summary))


def test_a_known_cost_is_shown_and_an_unknown_one_is_not():
    from tui.streaming.metrics import StreamMetrics, summarize
    from tui.streaming.status_line import program_figures

    priced, unpriced = StreamMetrics(clock=lambda: 1.0), StreamMetrics(clock=lambda: 1.0)
    priced.record_usage(412, 96, 0.00123)
    unpriced.record_usage(412, 96, None)
    assert program_figures(priced) == ("in 412 · out 96", "$0.0012")
    assert program_figures(unpriced) == ("in 412 · out 96",)
    assert "$0.0012" in as_text(totals_table(summarize([priced, unpriced], 2.0)))
    assert "cost" not in as_text(totals_table(summarize([unpriced], 2.0)))


def test_fields_that_do_not_stream_are_formatted():
    from tests.programs.sample_programs import Verdict

    assert format_value(0.75) == "0.75"
    assert json.loads(format_value(["a", "b"])) == ["a", "b"]
    assert json.loads(format_value(Verdict(label="good", score=3))) == {"label": "good", "score": 3}
    assert format_value("happy") == "happy"


async def test_typing_reaches_the_form_while_a_pane_has_focus(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=4))
    app = make_app([{"context": "c", "question": "q"}], signature=TWO_INPUTS)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        _context, question = app.dashboard.query_one(EntryForm).inputs
        question.focus()
        await pilot.press("f6")
        assert app.focused is panes(app)[0]
        await pilot.press(*"more")
        assert app.focused is question and question.value == "more"
        assert isinstance(question, QuestionInput)


async def test_the_stages_of_a_program_appear_one_after_the_other(make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=5))
    app = make_app(
        [{"context": "Rust is a systems language.", "question": "What is Rust?"}],
        program=f"{SAMPLES}:DraftThenPolish",
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app), timeout=30)
        await settle(pilot)
        (pane,) = panes(app)
        assert isinstance(pane.terminal, Done), pane.terminal
        blocks = trail(pane)
        keys = [key for key, _ in blocks]
        assert keys == ["timeline", "reasoning", "draft.answer", "timeline", "confidence"], blocks
        assert blocks[0][1] == "▸ draft" and blocks[3][1] == "▸ polish"
        assert pane.final_key == "polish.answer" and pane.answer == pane.terminal.prediction.answer
        assert blocks[-1][1] == format_value(pane.terminal.prediction.confidence)


async def test_questions_typed_fast_in_the_form_are_asked_one_by_one(make_app, openai_server: OpenAIServer):
    from tests.ui.test_typing import burst, keys_of

    openai_server.reset(Behaviour(tokens=4))
    app = make_app(signature=TWO_INPUTS)
    async with app.run_test(size=SIZE) as pilot:
        burst(pilot, keys_of("notes", "tab", "one", "enter", "two", "enter", "three", "enter"))
        await wait_until(pilot, lambda: len(panes(app)) >= 3)
        await wait_until(pilot, all_ended(app))
        asked = [dict(pane.run.job.inputs) for pane in panes(app)]
        assert asked == [{"context": "notes", "question": q} for q in ("one", "two", "three")]


async def test_the_status_line_stays_in_view_however_much_reasoning_streams(
    make_app, openai_server: OpenAIServer
):
    # At 80x24 with three cot panes, the reasoning once pushed every status line out of its pane.
    openai_server.reset(Behaviour(tokens=120))
    app = make_app(["What is Rust?", "Why is the sky blue?", "Explain monads"], program="cot")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, all_ended(app))
        await settle(pilot)
        first = panes(app)[0]
        status, inner = first.query_one(StreamStatus).region, first.content_region
        assert status.height == 1 and inner.contains_region(status), (status, inner)
        assert "done" in status_of(first)
