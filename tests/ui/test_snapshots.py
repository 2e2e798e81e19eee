"""How the dashboard looks, frozen: a clock that never moves, no blinking, no animation.

Streams are real (DSPy against the loopback server); "mid-flight" streams are held by the
server after a set number of tokens, and each snapshot waits until what arrived is drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot

from tests.support.openai_server import Behaviour, OpenAIServer
from tests.ui.conftest import SIZE, all_ended, panes, settle, wait_until
from tui.app import StreamDashboard

ANSWER = (
    "Rust is a **systems** programming language focused on safety.\n\n"
    '```rust\nfn main() {\n    println!("hello");\n}\n```\n\n- memory safety\n- zero-cost abstractions'
)


def drained(app: StreamDashboard) -> Callable[[], bool]:
    """Every event that arrived has been read and drawn."""
    return lambda: all(pane.run.queue.empty() and not pane.has_pending for pane in panes(app))


def held(server: OpenAIServer, app: StreamDashboard, streams: int) -> Callable[[], bool]:
    """The server holds `streams` streams, and every chunk it sent before holding them was read."""

    def holding() -> bool:
        stalled = [r for r in server.completions if r.outcome == "stalled"]
        read = sum(pane.run._lm_chunks for pane in panes(app))
        return len(stalled) == streams and read >= sum(r.tokens_sent for r in stalled)

    return holding


def test_empty_dashboard(snap_compare, make_app):
    assert snap_compare(make_app(frozen=True), terminal_size=SIZE)


def test_help(snap_compare, make_app):
    assert snap_compare(make_app(frozen=True), press=["f1"], terminal_size=SIZE)


def test_three_streams_mid_flight(snap_compare, make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=60, stall_after=14, stall_timeout=60))
    app = make_app(["What is Rust?", "What is Python?", "What is DSPy?"], frozen=True)

    async def run_before(pilot: Pilot) -> None:
        await wait_until(pilot, lambda: len(panes(app)) == 3)
        await wait_until(pilot, held(openai_server, app, 3))
        await wait_until(pilot, drained(app))
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_a_retrying_stream(snap_compare, make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(text=ANSWER))
    openai_server.script({"status": 429, "retry_after": 30})
    app = make_app(["What is Rust?"], frozen=True)

    async def run_before(pilot: Pilot) -> None:
        await wait_until(pilot, lambda: bool(panes(app)) and panes(app)[0].state_at(0) == "retrying")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_a_failed_stream_keeps_its_partial_answer(snap_compare, make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(text=ANSWER, cut_after=12))
    app = make_app(["What is Rust?"], frozen=True, max_retries=0)

    async def run_before(pilot: Pilot) -> None:
        await wait_until(pilot, all_ended(app))
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_cot_reasoning_and_answer(snap_compare, make_app, openai_server: OpenAIServer):
    reasoning = "The user asks about Rust. It is a language; I should say what it is known for."
    openai_server.reset(Behaviour(fields={"reasoning": reasoning, "answer": ANSWER}))
    app = make_app(["What is Rust?"], frozen=True, program="cot")

    async def run_before(pilot: Pilot) -> None:
        await wait_until(pilot, all_ended(app))
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_aggregate_view(snap_compare, make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=24))
    # One stream at a time, so the merged order is the same on every run.
    app = make_app(["What is Rust?", "What is Python?", "What is DSPy?"], frozen=True, concurrency=1)

    async def run_before(pilot: Pilot) -> None:
        await wait_until(pilot, all_ended(app))
        await pilot.press("f3")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_three_streams_at_80x24(snap_compare, make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=60, stall_after=14, stall_timeout=60))
    app = make_app(["What is Rust?", "What is Python?", "What is DSPy?"], frozen=True)

    async def run_before(pilot: Pilot) -> None:
        await wait_until(pilot, lambda: len(panes(app)) == 3)
        await wait_until(pilot, held(openai_server, app, 3))
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_six_streams_at_120x30(snap_compare, make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=60, stall_after=10, stall_timeout=60))
    questions = [
        f"Question {n}: what is {topic}?"
        for n, topic in enumerate(("Rust", "Go", "Zig", "C", "Lua", "Nim"), 1)
    ]
    app = make_app(questions, frozen=True)

    async def run_before(pilot: Pilot) -> None:
        await wait_until(pilot, lambda: len(panes(app)) == 6)
        await wait_until(pilot, held(openai_server, app, 6))
        await settle(pilot)

    assert snap_compare(app, terminal_size=(120, 30), run_before=run_before)


def test_the_table_view_at_120x30(snap_compare, make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=24))
    questions = [
        f"Question {n}: what is {topic}?"
        for n, topic in enumerate(("Rust", "Go", "Zig", "C", "Lua", "Nim"), 1)
    ]
    app = make_app(questions, frozen=True, concurrency=1)

    async def run_before(pilot: Pilot) -> None:
        await wait_until(pilot, all_ended(app))
        await settle(pilot)
        await pilot.press("f7")
        await wait_until(pilot, lambda: app.screen.id == "table")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 30), run_before=run_before)


TOOLS = Path(__file__).parents[1] / "programs" / "sample_tools.py"


def test_a_pane_with_several_output_fields(snap_compare, make_app, openai_server: OpenAIServer):
    fields = {
        "reasoning": "The user asks what Rust is. A short title, the answer, and how sure I am.",
        "title": "Rust in one line",
        "answer": ANSWER,
        "confidence": "0.82",
    }
    openai_server.reset(Behaviour(fields=fields))
    signature = "question -> title, answer, confidence: float"
    app = make_app(["What is Rust?"], frozen=True, program="cot", signature=signature)

    async def run_before(pilot: Pilot) -> None:
        await wait_until(pilot, all_ended(app))
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_the_entry_form_for_two_inputs(snap_compare, make_app):
    app = make_app(frozen=True, signature="context, question -> answer")

    async def run_before(pilot: Pilot) -> None:
        await pilot.press(*"Rust is a systems language from Mozilla.", "tab", *"Who made Rust?")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_a_react_run_with_its_tool_calls(snap_compare, make_app, openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=8))
    app = make_app(["What is Rust, and what is 6 times 7?"], frozen=True, program="react", tools=str(TOOLS))

    async def run_before(pilot: Pilot) -> None:
        await wait_until(pilot, all_ended(app), timeout=30)
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
