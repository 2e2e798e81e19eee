"""Merging several streams keeps each event's stream and the order events arrived in."""

from __future__ import annotations

import time

import dspy

from tests.streaming.conftest import server_lm, server_settings
from tests.support.openai_server import Behaviour
from tui.streaming.aggregate import merge_streams
from tui.streaming.events import Done, Token
from tui.streaming.runner import StreamJob, StreamRun


async def test_merged_events_keep_their_stream_and_arrival_order(openai_server):
    # Different paces make the streams interleave.
    runs = []
    for stream_id, rate in ((1, 40), (2, 25), (3, 60)):
        model = f"openai/tokens=20:tokens_per_s={rate}"
        settings = server_settings(openai_server, model=model)
        runs.append(
            StreamRun(
                StreamJob(f"q{stream_id}", stream_id),
                settings,
                server_lm(openai_server, model),
                dspy.ChatAdapter(),
            )
        )
    merged, received = [], []
    async for tagged in merge_streams(runs):
        merged.append(tagged)
        received.append(time.monotonic())  # when the reader got it, not when it was queued

    def asked(request) -> int:
        return next(sid for sid in (1, 2, 3) if f"q{sid}" in request.json["messages"][-1]["content"])

    requests = {asked(r): r for r in openai_server.requests}
    # Arrival order is the servers' order: the stream the server finished first ends first ...
    ended = [t.stream_id for t in merged if isinstance(t.event, Done)]
    assert ended == sorted(requests, key=lambda sid: requests[sid].finished_at)
    # ... and each stream's first token reaches the reader while its server is still sending.
    for sid, request in requests.items():
        first = next(i for i, t in enumerate(merged) if t.stream_id == sid and isinstance(t.event, Token))
        assert request.first_token_at <= received[first] < request.finished_at
    ids = [t.stream_id for t in merged if isinstance(t.event, Token)]
    assert len({ids[i] for i in range(len(ids) - 1) if ids[i] != ids[i + 1]}) > 1  # interleaved
    for run in runs:
        own = [t.event for t in merged if t.stream_id == run.job.stream_id]
        assert isinstance(own[-1], Done)
        text = "".join(e.text for e in own if isinstance(e, Token))
        assert text == own[-1].prediction.answer


async def test_leaving_the_merged_stream_cancels_every_stream(openai_server):
    openai_server.default = Behaviour(tokens=300, tokens_per_s=100)
    runs = [
        StreamRun(
            StreamJob(f"q{i}", i),
            server_settings(openai_server),
            server_lm(openai_server),
            dspy.ChatAdapter(),
        )
        for i in (1, 2)
    ]
    async for _ in merge_streams(runs):
        break
    for run in runs:
        assert type(await run.wait()).__name__ == "Cancelled"
