"""Backpressure: a consumer that stops reading for 10 s; the producer's memory must not grow.

The consumer takes the first answer token, then reads nothing for 10 s, then drains the rest.
While it is paused we sample the memory Python holds (tracemalloc) and, for dspy-stream, the
stream's queue size and the tokens its producer has taken from DSPy. Rows:
- raw streamify, paused: DSPy's own 16-item channel stops the LM; the baseline.
- dspy-stream, paused: the bounded queue (buffer_size events) stops the producer.
- unbounded forwarder, paused: what an app that copies the stream into an unbounded queue does,
  for scale.
Target: dspy-stream's queue stays <= buffer_size, its producer takes no more than buffer_size + 1
tokens while paused, its memory stays flat, and every token arrives once reading resumes.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import dspy
from dspy.streaming import StreamResponse

from tests.benchmarks import bench_session, print_table, raw_lm, raw_stream
from tests.support.openai_server import ServerProcess
from tui.streaming.events import Token

TOKENS, PAUSE_S, SAMPLE_S = 20_000, 10.0, 0.25
FLAT_BYTES = 16 * 1024  # "flat": less than this over the pause's second half
QUESTION = "What is backpressure?"


@dataclass
class Pause:
    """What one paused consumer saw."""

    at_pause: int = 0  # bytes traced when the consumer stopped reading
    samples: list[int] = field(default_factory=list)  # bytes traced while paused
    queue_max: int | None = None
    produced_while_paused: int | None = None
    buffered: int | None = None  # events waiting in an unbounded queue at the end of the pause
    received: int = 0

    @property
    def growth(self) -> int:
        return max(self.samples, default=self.at_pause) - self.at_pause

    @property
    def late_growth(self) -> int:
        """Change over the pause's second half, once any buffer has had time to fill."""
        return self.samples[-1] - self.samples[len(self.samples) // 2] if self.samples else 0


async def paused_reader(tokens: AsyncIterator[object], pause: Pause, watch: Callable[[], None]) -> None:
    """Take one token, pause (sampling memory), then read the rest."""
    await anext(tokens)
    pause.received = 1
    pause.at_pause = tracemalloc.get_traced_memory()[0]
    watch()
    deadline = time.perf_counter() + PAUSE_S
    while time.perf_counter() < deadline:
        await asyncio.sleep(SAMPLE_S)
        pause.samples.append(tracemalloc.get_traced_memory()[0])
        watch()
    async for _ in tokens:
        pause.received += 1


async def raw_paused(base_url: str) -> Pause:
    pause = Pause()

    async def tokens() -> AsyncIterator[object]:
        stream = raw_stream(dspy.Predict("question -> answer"), is_async_program=True)
        async for value in stream(question=QUESTION):
            if isinstance(value, StreamResponse) and value.chunk:
                yield value

    with dspy.context(lm=raw_lm(base_url), adapter=dspy.ChatAdapter()):
        await paused_reader(tokens(), pause, lambda: None)
    return pause


async def dspy_stream_paused(base_url: str) -> Pause:
    pause = Pause(queue_max=0)
    run = bench_session(base_url).new_run(QUESTION)
    start_tokens: int | None = None

    async def tokens() -> AsyncIterator[object]:
        async for event in run.events():
            if isinstance(event, Token) and event.field == "answer":
                yield event

    def watch() -> None:
        nonlocal start_tokens
        pause.queue_max = max(pause.queue_max or 0, run.queue.qsize())
        if start_tokens is None:
            start_tokens = run.metrics.tokens
        pause.produced_while_paused = run.metrics.tokens - start_tokens

    await paused_reader(tokens(), pause, watch)
    return pause


async def unbounded_paused(base_url: str) -> Pause:
    pause = Pause()
    queue: asyncio.Queue[object] = asyncio.Queue()
    done = object()

    async def forward() -> None:
        stream = raw_stream(dspy.Predict("question -> answer"), is_async_program=True)
        with dspy.context(lm=raw_lm(base_url), adapter=dspy.ChatAdapter()):
            async for value in stream(question=QUESTION):
                if isinstance(value, StreamResponse) and value.chunk:
                    queue.put_nowait(value)
        queue.put_nowait(done)

    async def tokens() -> AsyncIterator[object]:
        while (item := await queue.get()) is not done:
            yield item

    def watch() -> None:
        pause.buffered = queue.qsize()

    forwarder = asyncio.create_task(forward())
    await paused_reader(tokens(), pause, watch)
    await forwarder
    return pause


CLIENTS: dict[str, Callable[[str], Awaitable[Pause]]] = {
    "raw streamify, paused": raw_paused,
    "dspy-stream, paused": dspy_stream_paused,
    "unbounded forwarder, paused": unbounded_paused,
}


async def measure(base_url: str) -> dict[str, Pause]:
    tracemalloc.start()
    try:
        return {name: await client(base_url) for name, client in CLIENTS.items()}
    finally:
        tracemalloc.stop()


def main() -> None:
    with ServerProcess(tokens=TOKENS) as server:
        results = asyncio.run(measure(server.base_url))
    buffer_size = bench_session("http://127.0.0.1").settings.buffer_size
    forwarder = results["unbounded forwarder, paused"]
    base = results["raw streamify, paused"].growth
    rows = []
    for name, pause in results.items():
        rows.append(
            (
                name,
                pause.growth / 1024,
                pause.late_growth / 1024,
                "-" if pause.queue_max is None else pause.queue_max,
                "-" if pause.produced_while_paused is None else pause.produced_while_paused,
                "-" if pause.buffered is None else pause.buffered,
                pause.received,
                pause.growth / base if base > 0 else float("nan"),
            )
        )
    print_table(
        f"Backpressure: one {TOKENS}-token stream, unpaced; the consumer stops reading for {PAUSE_S:g} s"
        f" (buffer_size {buffer_size})",
        (
            "client",
            "growth KiB",
            "2nd half KiB",
            "queue max",
            "produced paused",
            "buffered",
            "tokens received",
            "x raw growth",
        ),
        rows,
        notes=(
            "growth: most bytes traced during the pause minus those at its start; 2nd half: change over the"
            " pause's second half.",
            "A one-off growth at the start of a pause is the HTTP read buffers filling (asyncio's 64 KiB"
            " StreamReader, the LM client's parser), bounded; the forwarder's grows with every token.",
        ),
    )
    ours = results["dspy-stream, paused"]
    bounded = ours.queue_max is not None and ours.queue_max <= buffer_size
    stopped = ours.produced_while_paused is not None and ours.produced_while_paused <= buffer_size + 1
    flat = ours.late_growth <= FLAT_BYTES
    complete = ours.received == forwarder.received
    verdict = "met" if bounded and stopped and flat and complete else "NOT met"
    print(
        f"target: queue <= buffer_size ({ours.queue_max} <= {buffer_size}); producer stops"
        f" ({ours.produced_while_paused} tokens taken while paused <= {buffer_size + 1}); memory flat"
        f" ({ours.late_growth / 1024:.1f} KiB <= {FLAT_BYTES // 1024} KiB); every token delivered"
        f" ({ours.received} of {forwarder.received}): {verdict}"
    )


if __name__ == "__main__":
    main()
