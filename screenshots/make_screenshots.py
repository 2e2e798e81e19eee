"""Regenerate the SVGs in screenshots/: the app draws them itself, against the loopback test server.

    python screenshots/make_screenshots.py

Each picture is a real run: DSPy streams from `tests/support/openai_server.py`, paused by the
server at a chosen point, with the dashboard's clock frozen so the figures read the same each time.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

from textual.pilot import Pilot  # noqa: E402

from tests.support.openai_server import Behaviour, OpenAIServer  # noqa: E402
from tui.app import StreamDashboard  # noqa: E402
from tui.config import Settings  # noqa: E402
from tui.engine.replay import ReplaySession  # noqa: E402
from tui.streaming.session import StreamSession  # noqa: E402
from tui.streaming.session_base import SessionBase  # noqa: E402
from tui.streaming.trace import TraceWriter, read_trace  # noqa: E402
from tui.streaming.variants import VariantSession, variant_labels  # noqa: E402

OUT = Path(__file__).resolve().parent
SIZE = (140, 42)
QUESTIONS = ["What is Rust?", "What is Python?", "What is DSPy?", "Why stream answers token by token?"]
ANSWER = (
    "## Streaming\n\nEach **token** is drawn as soon as it arrives, so nobody waits for the whole reply.\n\n"
    "```python\nasync for event in run.events():\n    pane.show(event)\n```\n\n"
    "- answers stream side by side\n- a failed stream keeps its partial answer\n"
    "- retries are shown as they happen"
)


REACT_QUESTION = "What is the capital of Peru, and how many letters does it have, times two?"
# What the model says at each step of the ReAct run (the loopback server answers each request
# with the next of these): a thought and a tool call, twice, then finish; then the answer.
REACT_STEPS = (
    {
        "next_thought": "I need the capital of Peru first; the capital_of tool knows it.",
        "next_tool_name": "capital_of",
        "next_tool_args": '{"country": "Peru"}',
    },
    {
        "next_thought": "The capital is Lima, which has 4 letters. Now I multiply 4 by 2.",
        "next_tool_name": "calculate",
        "next_tool_args": '{"expression": "4 * 2"}',
    },
    {
        "next_thought": "Lima has 4 letters and 4 times 2 is 8: I can answer.",
        "next_tool_name": "finish",
        "next_tool_args": "{}",
    },
    {
        "reasoning": "capital_of gave Lima; calculate gave 8 for 4 * 2.",
        "answer": "The capital of Peru is **Lima**. Its name has 4 letters, and 4 times 2 is **8**.",
    },
)


def frozen_clock() -> float:
    return 1000.0


async def until(pilot: Pilot, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not reach the state to picture")
        await pilot.pause(0.05)


async def picture(
    name: str,
    server: OpenAIServer,
    questions: list[str],
    ready: Callable[[StreamDashboard, Pilot], Awaitable[None]],
    *,
    session: Callable[[Settings], SessionBase] = StreamSession,
    then: Callable[[StreamDashboard, Pilot], Awaitable[str]] | None = None,
    **settings: object,
) -> None:
    """`then`: after the first picture, go on to a second one (its name returned)."""
    clock = settings.pop("clock", frozen_clock)
    config = Settings(model="openai/test-model", api_base=server.base_url, retry_delay=0.0)
    config = config.replace(**settings)
    made = session(config)
    schedule = made if isinstance(made, ReplaySession) else None
    app = StreamDashboard(config, questions, session=made, clock=clock, steady=True, schedule=schedule)
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await pilot.pause(0.4)
        path = app.save_screenshot(filename=f"{name}.svg", path=str(OUT))
        print(f"wrote {Path(path).relative_to(ROOT)}")
        if then is not None:
            second = await then(app, pilot)
            await pilot.pause(0.4)
            path = app.save_screenshot(filename=f"{second}.svg", path=str(OUT))
            print(f"wrote {Path(path).relative_to(ROOT)}")


COMPARED = ("openai/gpt-4o-mini", "openai/gpt-4o", "openai/gpt-3.5-turbo")
COMPARE_ANSWER = (
    "Streaming shows each **token** as it arrives: the first words are read while the model "
    "still writes the rest, and a slow or failing answer is seen at once."
)


def compare_session(config: Settings) -> SessionBase:
    each = [config.replace(model=model) for model in COMPARED]
    labels = variant_labels(each)
    return VariantSession(config, [(label, StreamSession(s)) for label, s in zip(labels, each, strict=True)])


def ended(app: StreamDashboard) -> Callable[[], bool]:
    return lambda: bool(app.dashboard.panes) and not any(pane.live for pane in app.dashboard.panes)


async def main() -> None:
    with OpenAIServer() as server:
        # The interactive dashboard: two answers done, the current one rendered as Markdown.
        server.reset(Behaviour(text=ANSWER))

        async def interactive(app: StreamDashboard, pilot: Pilot) -> None:
            await until(pilot, ended(app))
            app.dashboard.query_one("#question").value = "What does a bounded queue protect?"

        await picture("dashboard", server, QUESTIONS[:2], interactive)

        # Concurrent streams, held mid-flight by the server after a different number of tokens each.
        server.reset(Behaviour(text=ANSWER))
        for stall in (9, 16, 23, 30):
            server.script({"stall_after": stall, "stall_timeout": 60})

        async def concurrent(app: StreamDashboard, pilot: Pilot) -> None:
            await until(pilot, lambda: sum(r.outcome == "stalled" for r in server.completions) == 4)
            panes = app.dashboard.panes
            await until(pilot, lambda: all(p.run.queue.empty() and not p.has_pending for p in panes))

        await picture("concurrent", server, QUESTIONS, concurrent, mode="concurrent", concurrency=4)

        # A retry in progress: a 429 with Retry-After, next to a stream that goes on.
        server.reset(Behaviour(text=ANSWER, tokens_per_s=8))
        server.script({"status": 429, "retry_after": 30})

        async def retrying(app: StreamDashboard, pilot: Pilot) -> None:
            await until(pilot, lambda: len(app.dashboard.panes) == 2)
            await until(pilot, lambda: app.dashboard.panes[0].state_at(0) == "retrying")
            await pilot.pause(1.5)

        await picture("retry", server, QUESTIONS[:2], retrying, concurrency=2)

        # The aggregate view: three streams merged, one after another so the order is stable.
        server.reset(Behaviour(tokens=30))

        async def aggregate(app: StreamDashboard, pilot: Pilot) -> None:
            await until(pilot, ended(app))

        await picture("aggregate", server, QUESTIONS[:3], aggregate, mode="aggregate", concurrency=1)

        # A ReAct agent with examples/tools.py: thoughts, tool calls and results, then the answer.
        # Paced tokens and the real clock, so the figures are those of a real run; the model is
        # named as a priced one so LiteLLM computes a cost from the provider's token counts.
        server.reset(Behaviour(tokens_per_s=30, first_token_delay=0.3))
        server.script(
            *(Behaviour(fields=step, tokens_per_s=30, first_token_delay=0.3) for step in REACT_STEPS)
        )

        async def react(app: StreamDashboard, pilot: Pilot) -> None:
            await until(pilot, ended(app), timeout=60)
            app.dashboard.query_one("#question").value = "What is today's date?"

        await picture(
            "react", server, [REACT_QUESTION], react,
            program="react", tools=str(ROOT / "examples" / "tools.py"),
            model="openai/gpt-4o-mini", clock=time.monotonic,
        )  # fmt: skip

        # Three models compared on the same questions: two stream at their own pace, the third
        # is rate-limited and waits out its Retry-After. Then F4: the compare table.
        server.reset(Behaviour(text=COMPARE_ANSWER))
        server.models = {
            "gpt-4o-mini": Behaviour(text=COMPARE_ANSWER, tokens_per_s=45, first_token_delay=0.2),
            "gpt-4o": Behaviour(text=COMPARE_ANSWER, tokens_per_s=25, first_token_delay=0.45),
            "gpt-3.5-turbo": Behaviour(status=429, retry_after=30),
        }

        def compared_ended(app: StreamDashboard) -> bool:
            panes = app.dashboard.panes
            return len(panes) == 6 and all(not p.live for p in panes if p.run.job.variant_no < 3)

        async def compare(app: StreamDashboard, pilot: Pilot) -> None:
            await until(pilot, lambda: compared_ended(app), timeout=60)
            app.dashboard.query_one("#question").value = "What does a bounded queue protect?"

        async def compare_table(app: StreamDashboard, pilot: Pilot) -> str:
            await pilot.press("f4")
            await pilot.pause(1.2)  # the table is refreshed once a second
            return "compare-table"

        await picture(
            "compare", server, QUESTIONS[:2], compare, session=compare_session, then=compare_table,
            clock=time.monotonic,
        )  # fmt: skip

        # Record a run (a retry included), then replay it at twice its speed with no server.
        trace_path = OUT / ".replay.trace"
        server.reset(Behaviour(text=ANSWER, tokens_per_s=40, first_token_delay=0.2))
        server.script({"status": 429, "retry_after": 1})

        def recorded(config: Settings) -> SessionBase:
            session = StreamSession(config)
            session.watch(TraceWriter(trace_path, session, "concurrent"))
            return session

        async def record(app: StreamDashboard, pilot: Pilot) -> None:
            await until(pilot, ended(app), timeout=60)

        await picture("recorded", server, QUESTIONS[:3], record, session=recorded, clock=time.monotonic)
        (OUT / "recorded.svg").unlink()
        replayed = ReplaySession(read_trace(trace_path), speed=2.0)
        trace_path.unlink()

        async def replay(app: StreamDashboard, pilot: Pilot) -> None:
            panes = app.dashboard.panes
            await until(pilot, lambda: len(app.dashboard.panes) == 3, timeout=30)
            panes = app.dashboard.panes
            await until(pilot, lambda: sum(p.run.metrics.tokens for p in panes) > 60, timeout=30)

        await picture(
            "replay", server, list(replayed.questions), replay, session=lambda _config: replayed,
            clock=replayed.clock,
        )  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
