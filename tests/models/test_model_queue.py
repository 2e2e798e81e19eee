"""The embedded model serves one stream at a time: a waiting stream knows its place; the wait is no TTFT."""

from __future__ import annotations

import asyncio

from tui.config import Settings
from tui.streaming.events import Status
from tui.streaming.session import StreamSession


async def test_waiting_streams_know_their_place_and_their_wait_is_reported_apart() -> None:
    session = StreamSession(Settings(model="local", temperature=0.0, max_tokens=24, concurrency=3))
    runs = [session.new_run(q) for q in ("Who wrote Hamlet?", "What is 2+2?", "Name a colour.")]
    seen: dict[int, list[int | None]] = {run.job.stream_id: [] for run in runs}

    async def consume(run) -> None:
        async for event in run.events():
            if isinstance(event, Status) and event.message == "queued":
                seen[run.job.stream_id].append(event.ahead)

    await asyncio.wait_for(asyncio.gather(*(consume(run) for run in runs)), 300)

    first, second, third = runs
    assert seen[1] == []
    assert seen[2] == [1]
    assert seen[3] == [2, 1], "the third stream is told 2 ahead, then 1 once the first is done"
    assert first.metrics.queue_time == 0.0
    for run in (second, third):
        m = run.metrics
        assert m.state == "done"
        assert m.queue_time > 0
        # TTFT counts from the stream's start but not the wait for the model.
        assert m.ttft is not None and m.ttft < m.first_token_at - m.started_at - m.queue_time / 2
    assert third.metrics.queue_time > second.metrics.queue_time
