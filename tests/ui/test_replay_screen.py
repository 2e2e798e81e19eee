"""A recorded run replays to the same screen: panes, answers, status lines, errors.

The run is real (DSPy against the loopback server, a retry after a 503 and a refusal with 401),
recorded as `--record` does; the replay needs no server.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from textual.widgets import Static

from tests.support.openai_server import Behaviour, OpenAIServer
from tests.ui.conftest import SIZE, all_ended, frozen_clock, panes, server_settings, settle, wait_until
from tui.app import StreamDashboard
from tui.engine.replay import ReplaySession
from tui.streaming.session import StreamSession
from tui.streaming.trace import TraceWriter, read_trace
from tui.widgets.stream_status import StreamStatus

QUESTIONS = ["first question", "second question", "third question"]


def _record(server: OpenAIServer, path: Path, clock: Callable[[], float]) -> StreamDashboard:
    server.reset(Behaviour(tokens=30, tokens_per_s=300))
    server.script({"status": 503}, {}, {"status": 401}, {})
    settings = server_settings(server, concurrency=1, max_retries=1)
    session = StreamSession(settings)
    session.watch(TraceWriter(path, session, "concurrent", clock=clock))
    return StreamDashboard(settings, QUESTIONS, session=session, clock=clock, steady=True)


def _replay(path: Path) -> StreamDashboard:
    session = ReplaySession(read_trace(path), speed=float("inf"))
    return StreamDashboard(
        session.settings, list(session.questions), session=session, clock=session.clock, steady=True,
        schedule=session,
    )  # fmt: skip


def _screen_of(app: StreamDashboard) -> list[tuple[str, ...]]:
    return [
        (
            str(pane.border_title), pane.question, pane.answer, pane.run.metrics.state,
            str(pane.query_one(StreamStatus).render()), str(pane.query_one(".error-line", Static).render()),
        )
        for pane in panes(app)
    ]  # fmt: skip


async def _run_recorded(
    server: OpenAIServer, path: Path, clock: Callable[[], float]
) -> list[tuple[str, ...]]:
    """Run the three questions in the dashboard, recorded to `path`; what the screen showed."""
    original = _record(server, path, clock)
    async with original.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(original))
        await settle(pilot)
        return _screen_of(original)


async def test_a_recorded_run_replays_to_the_same_screen(openai_server, tmp_path):
    import time

    trace = tmp_path / "run.trace"
    recorded = await _run_recorded(openai_server, trace, time.monotonic)
    assert [row[3] for row in recorded] == ["done", "failed", "done"]
    assert "attempt" in recorded[0][4]  # the retry, in the first stream's status line
    replay = _replay(trace)
    async with replay.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(panes(replay)) == 3 and all_ended(replay)())
        await settle(pilot)
        replayed = _screen_of(replay)
    for again, then in zip(replayed, recorded, strict=True):
        assert again[:4] == then[:4] and again[5] == then[5]
        _assert_same_figures(again[4], then[4])


NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def _assert_same_figures(again: str, then: str) -> None:
    """The same status line: the same words, and each figure as shown, or one unit of its last
    digit off (a trace keeps instants to the microsecond: 300.49 tok/s may replay as 300.51)."""
    assert NUMBER.sub("#", again) == NUMBER.sub("#", then), (again, then)
    for a, b in zip(NUMBER.findall(again), NUMBER.findall(then), strict=True):
        unit = 10 ** -len(b.partition(".")[2])
        assert abs(float(a.replace(",", "")) - float(b.replace(",", ""))) <= unit + 1e-9, (again, then)


def test_snapshot_of_a_replayed_run(snap_compare, openai_server, tmp_path):
    import asyncio

    trace = tmp_path / "run.trace"
    asyncio.run(_run_recorded(openai_server, trace, frozen_clock))
    replay = _replay(trace)

    async def replayed(pilot) -> None:
        await wait_until(pilot, lambda: len(panes(replay)) == 3 and all_ended(replay)())
        await settle(pilot)

    assert snap_compare(replay, terminal_size=SIZE, run_before=replayed)
