"""A pane's status line says what is true: a cut answer, a stall, a wait, no rate from three tokens."""

from __future__ import annotations

from tests.support.openai_server import Behaviour, OpenAIServer
from tests.ui.conftest import SIZE, all_ended, panes, server_settings, wait_until
from tui.app import StreamDashboard
from tui.streaming.figures import DASH
from tui.streaming.metrics import StreamMetrics
from tui.streaming.session import StreamSession
from tui.widgets.stream_status import StatusFacts, StreamStatus, status_content


class MovableClock:
    """A clock the test moves: the stream's figures and the status line read it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def status_of(app: StreamDashboard, index: int = 0) -> str:
    return str(panes(app)[index].query_one(StreamStatus).render())


async def test_an_answer_cut_by_the_token_limit_is_marked_truncated(openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=12, finish_reason="length"))
    app = StreamDashboard(
        settings := server_settings(openai_server),
        ["What is Rust?"],
        session=StreamSession(settings),
        steady=True,
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        await wait_until(pilot, lambda: "truncated" in status_of(app))
        assert status_of(app).startswith("✓ done · truncated")
        notes = [e.text for e in app.merged.entries if e.kind == "note"]
        assert notes and "truncated" in notes[-1]


async def test_a_whole_answer_is_not_marked_truncated(openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=12))
    app = StreamDashboard(
        settings := server_settings(openai_server),
        ["What is Rust?"],
        session=StreamSession(settings),
        steady=True,
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        await wait_until(pilot, lambda: "done" in status_of(app))
        assert "truncated" not in status_of(app)


async def test_a_stall_is_said_with_the_time_left_before_the_timeout(openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=60, stall_after=6, stall_timeout=30))
    clock = MovableClock()
    settings = server_settings(openai_server, timeout=60.0)
    app = StreamDashboard(
        settings, ["What is Rust?"], session=StreamSession(settings), clock=clock, steady=True
    )
    async with app.run_test(size=SIZE) as pilot:
        await openai_server.until(lambda: any(r.outcome == "stalled" for r in openai_server.completions))
        await wait_until(pilot, lambda: panes(app)[0].state_at(clock()) == "streaming")
        await wait_until(pilot, lambda: "streaming" in status_of(app))
        assert "no token" not in status_of(app)

        def quiet_for_12_s() -> bool:
            # 12 s after the last token, whenever it came: one still on its way when the server
            # stalled would otherwise be stamped after the clock moved, and the line never says it.
            last = panes(app)[0].run.metrics.last_token_at
            clock.now = max(clock.now, (last if last is not None else clock.now) + 12)
            return "no token for 12 s (timeout in 48 s)" in status_of(app)

        await wait_until(pilot, quiet_for_12_s)
        panes(app)[0].cancel()
        await wait_until(pilot, all_ended(app))


async def test_three_tokens_make_no_rate(openai_server: OpenAIServer):
    openai_server.reset(Behaviour(tokens=3, raw=True))
    app = StreamDashboard(
        settings := server_settings(openai_server, adapter="plain"),
        ["Hi?"],
        session=StreamSession(settings),
        steady=True,
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, all_ended(app))
        await wait_until(pilot, lambda: "done" in status_of(app))
        metrics = panes(app)[0].run.metrics
        assert 0 < metrics.tokens < 5
        assert f"{DASH} tok/s" in status_of(app), status_of(app)


def test_a_wait_for_the_embedded_model_says_how_many_are_ahead():
    metrics = StreamMetrics(clock=lambda: 5.0)
    metrics.begin_wait(ahead=2)
    line = str(status_content(StatusFacts(state="queued", metrics=metrics), 5.0))
    assert "waiting for the model (2 ahead)" in line
    metrics.end_wait()
    metrics.begin_wait()  # the session's concurrency limit: no model queue to count
    assert "waiting for a free slot" in str(status_content(StatusFacts(state="queued", metrics=metrics), 5.0))


def test_one_token_is_singular():
    metrics = StreamMetrics(clock=lambda: 5.0)
    metrics.start_attempt()
    metrics.record_token("answer")
    metrics.finish("done")
    from tui.streaming.figures import count

    assert count(metrics.tokens, "token") == "1 token" and count(3, "token") == "3 tokens"


def test_the_pane_and_headless_say_the_same_line():
    """Both are `tui.streaming.status_line.status_parts`: the pane styles it, headless prints it."""
    from tui.streaming.events import Retrying
    from tui.streaming.status_line import plain_status_line

    clock = MovableClock()
    metrics = StreamMetrics(clock=clock)
    metrics.start()
    metrics.start_attempt()
    for _ in range(3):
        clock.now += 0.25
        metrics.record_token("answer")
    retry = Retrying(attempt=1, max_attempts=4, delay=2.0, error="500 server error")
    metrics.start_attempt()
    for _ in range(40):
        clock.now += 0.05
        metrics.record_token("answer")
    metrics.finish("done")
    for facts in (
        StatusFacts("done", metrics, max_attempts=4),
        StatusFacts("retrying", metrics, max_attempts=4, retry=retry, retry_left=1.5),
    ):
        pane = status_content(facts, clock.now).plain
        _icon, _, words = pane.partition(" ")
        state, _, figures = plain_status_line(facts).partition(" · ")
        assert words == f"{state.strip('[]')} · {figures}", (pane, plain_status_line(facts))
    assert plain_status_line(StatusFacts("done", metrics, max_attempts=4)).endswith("attempt 2/4")
