"""First-token overhead: the latency dspy-stream adds before the first answer token, against raw streamify.

One stream at a time, raw and dspy-stream taking turns, each timed from the question being asked
(the program built, the stream started) to its consumer holding the first answer token.
Target: the median added latency (median of the paired differences) <= 5 ms.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import dspy
from dspy.streaming import StreamResponse

from tests.benchmarks import bench_session, median, print_table, raw_lm, raw_stream
from tests.support.openai_server import ServerProcess
from tui.streaming.events import Token
from tui.streaming.metrics import percentile
from tui.streaming.session import StreamSession

PAIRS, TOKENS, WARMUP = 40, 20, 5
TARGET_MS = 5.0


async def raw_first_token(question: str) -> float:
    started = time.perf_counter()
    first = None
    stream = raw_stream(dspy.Predict("question -> answer"), is_async_program=True)
    async for value in stream(question=question):
        if first is None and isinstance(value, StreamResponse):
            first = time.perf_counter() - started
    assert first is not None
    return first


async def dspy_stream_first_token(session: StreamSession, question: str) -> float:
    started = time.perf_counter()
    first = None
    async for event in session.new_run(question).events():
        if first is None and isinstance(event, Token) and event.field == "answer":
            first = time.perf_counter() - started
    assert first is not None
    return first


async def measure(base_url: str) -> tuple[list[float], list[float]]:
    session = bench_session(base_url)
    raw: list[float] = []
    ours: list[float] = []
    with dspy.context(lm=raw_lm(base_url), adapter=dspy.ChatAdapter()):
        for i in range(WARMUP + PAIRS):
            question = f"Question {i}: how fast is the first token?"
            # Alternate which goes first, so neither always follows the other's cleanup.
            if i % 2:
                pair = (await raw_first_token(question), await dspy_stream_first_token(session, question))
            else:
                ours_first = await dspy_stream_first_token(session, question)
                pair = (await raw_first_token(question), ours_first)
            if i >= WARMUP:
                raw.append(pair[0])
                ours.append(pair[1])
    return raw, ours


def main() -> None:
    with ServerProcess(tokens=TOKENS) as server:
        raw, ours = asyncio.run(measure(server.base_url))
    added = [(o - r) * 1000 for r, o in zip(raw, ours, strict=True)]

    def row(name: str, values: list[float]) -> tuple[object, ...]:
        ms = [v * 1000 for v in values]
        return (
            name,
            median(ms),
            percentile(ms, 90),
            min(ms),
            statistics.fmean(ms),
            median(values) / median(raw),
        )

    print_table(
        f"First-token latency: {PAIRS} single streams each, taking turns, unpaced server process (ms)",
        ("client", "median", "p90", "min", "mean", "x raw"),
        [row("raw streamify (is_async_program=True)", raw), row("dspy-stream session", ours)],
    )
    added_median = median(added)
    verdict = "met" if added_median <= TARGET_MS else "NOT met"
    print(
        f"added latency, dspy-stream minus raw, paired: median {added_median:.2f} ms,"
        f" p90 {percentile(added, 90):.2f} ms; target <= {TARGET_MS:g} ms: {verdict}"
    )


if __name__ == "__main__":
    main()
