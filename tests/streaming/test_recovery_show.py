"""Recovery and demo modes show a retry every time, on the embedded model, run for real."""

from __future__ import annotations

import asyncio

import pytest

from tui.config import Settings
from tui.streaming.session import StreamSession


@pytest.mark.parametrize("mode", ["recovery", "demo"])
async def test_the_recovery_and_demo_modes_always_show_a_retry(mode: str) -> None:
    settings = Settings(model="local", mode=mode, max_tokens=12, retry_delay=0.0, concurrency=2)
    session = StreamSession(settings)
    runs = [session.new_run(q) for q in ("What is 2+2?", "Name a colour.")]
    await asyncio.wait_for(asyncio.gather(*(run.wait() for run in runs)), 300)
    retried = [run for run in runs if run.metrics.attempts > 1]
    assert retried, "a recovery to watch"
    assert all(run.metrics.state == "done" for run in runs)
    assert "injected" in retried[0].record.attempts[0].error
