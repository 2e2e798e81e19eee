"""The dashboard under test: real streams from the loopback server, a frozen clock, no blinking."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pytest
from textual.pilot import Pilot

from tests.support.openai_server import OpenAIServer
from tui.app import StreamDashboard
from tui.config import Settings
from tui.widgets.stream_pane import StreamPane

FROZEN_NOW = 1000.0
SIZE = (120, 36)


def frozen_clock() -> float:
    return FROZEN_NOW


def server_settings(server: OpenAIServer, **changes: object) -> Settings:
    # retry_delay=0: a retry waits exactly the server's Retry-After, so what is drawn is repeatable.
    base = Settings(model="openai/test-model", api_base=server.base_url, retry_delay=0.0, timeout=10.0)
    return base.replace(**changes)


@pytest.fixture
def make_app(openai_server: OpenAIServer) -> Callable[..., StreamDashboard]:
    """A dashboard on the loopback server; `frozen=True` freezes every figure and spinner."""

    def make(questions: Sequence[str] = (), *, frozen: bool = False, **changes: object) -> StreamDashboard:
        settings = server_settings(openai_server, **changes)
        if frozen:
            return StreamDashboard(settings, questions, clock=frozen_clock, steady=True)
        return StreamDashboard(settings, questions, steady=True)

    return make


async def wait_until(pilot: Pilot, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Let the app run until `predicate()` holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            states = [(pane.number, pane.state_at(FROZEN_NOW), pane.terminal) for pane in panes(pilot.app)]
            raise AssertionError(f"timed out after {timeout} s waiting for the app; panes: {states}")
        await pilot.pause(0.05)


def panes(app: StreamDashboard) -> list[StreamPane]:
    return app.dashboard.panes


def all_ended(app: StreamDashboard) -> Callable[[], bool]:
    return lambda: bool(panes(app)) and all(not pane.live for pane in panes(app))


async def settle(pilot: Pilot) -> None:
    """A few clock ticks, so what the streams delivered is on screen."""
    await pilot.pause(0.3)
