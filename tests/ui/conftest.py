"""The dashboard under test: real streams from the loopback server, a frozen clock, no blinking."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pytest
from textual.pilot import Pilot

from tests.support.openai_server import OpenAIServer
from tui.app import StreamDashboard
from tui.config import Settings
from tui.streaming.session import StreamSession
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
            return StreamDashboard(
                settings, questions, session=StreamSession(settings), clock=frozen_clock, steady=True
            )
        return StreamDashboard(settings, questions, session=StreamSession(settings), steady=True)

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


def drawn(pane: StreamPane) -> bool:
    """Everything the pane's stream delivered is on screen, its status line and Markdown included.

    A pane out of view draws when it comes into view, so of it only the stream must be read."""
    if not pane.run.queue.empty() or pane._reset:
        return False
    if pane not in pane.screen._compositor.visible_widgets:  # drawn when scrolled into view
        return pane.terminal is None or pane._finalised
    if pane.has_pending:
        return False
    if not pane.status_shows(pane.clock()):
        return False
    if not trail_drawn(pane):
        return False
    if pane.terminal is not None:
        return pane._finalised and (not pane.answer or pane._markdown.finished)
    return True


def trail_drawn(pane: StreamPane) -> bool:
    """Every section of the pane's trail is mounted and has wrapped its text."""
    from tui.widgets.field_section import GrowingText

    trail = pane._trail
    if not trail.display:
        return True
    return all(view.is_mounted and (view._rows or not view.text) for view in trail.query(GrowingText))


async def settle(pilot: Pilot) -> None:
    """Wait until what the streams delivered is drawn (panes, status lines, the merged view)."""
    from tui.widgets.merged_log import MergedLogView

    app = pilot.app

    def caught_up() -> bool:
        views = list(app.screen.query(MergedLogView))
        merged = all(view._next == app.merged.end for view in views)
        return merged and all(drawn(pane) for pane in panes(app))

    await wait_until(pilot, caught_up)
    await pilot.pause()  # the frame with it
