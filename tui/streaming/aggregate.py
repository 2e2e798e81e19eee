"""Merge several streams into one event stream, in arrival order, each event tagged with its stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from tui.streaming.events import Tagged
from tui.streaming.runner import StreamRun


async def merge_streams(runs: Sequence[StreamRun], buffer_size: int = 100) -> AsyncIterator[Tagged]:
    """Yield every event of every run as it arrives; ends when all runs have ended.

    The merged queue is bounded too, so a slow reader slows every producer down.
    Leaving early cancels the runs that are still going.
    """
    merged: asyncio.Queue[Tagged | None] = asyncio.Queue(maxsize=buffer_size)

    async def forward(run: StreamRun) -> None:
        async for event in run.events():
            await merged.put(Tagged(run.job.stream_id, event, time.monotonic()))
        await merged.put(None)

    forwarders = [asyncio.create_task(forward(run), name=f"merge-{run.job.stream_id}") for run in runs]
    remaining = len(forwarders)
    try:
        while remaining:
            item = await merged.get()
            if item is None:
                remaining -= 1
            else:
                yield item
    finally:
        for task in forwarders:
            task.cancel()
        await asyncio.gather(*forwarders, return_exceptions=True)
