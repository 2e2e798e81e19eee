"""Throughput: 32 streams x 1,000 tokens at once, through raw `dspy.streamify` loops and dspy-stream.

Rows:
- naive raw loop: a sync program, as DSPy's docs show it; DSPy runs it on its thread pool
  (`async_max_workers`, 8 threads), so the streams queue for a thread.
- best raw loop: `is_async_program=True`, every stream a task on one event loop. The baseline.
- dspy-stream session: `StreamSession` streams, each consumed with `events()`.
- dspy-stream headless: `HeadlessRun` in concurrent mode, output thrown away.
Target: dspy-stream headless >= 0.9 x the best raw loop.

The dashboard's row goes into `CLIENTS` (see the comment there).
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import dspy
from dspy.streaming import StreamResponse

from tests.benchmarks import bench_session, bench_settings, median, print_table, raw_lm, raw_stream
from tests.support.openai_server import ServerProcess
from tui.headless import HeadlessRun
from tui.streaming.events import Token

STREAMS, TOKENS, ROUNDS = 32, 1000, 5
TARGET = 0.9
BASELINE = "best raw loop (is_async_program=True)"

# A client streams every question at once and returns the answer tokens its consumer received.
Client = Callable[[str, list[str]], Awaitable[int]]


async def _raw_loop(base_url: str, questions: list[str], *, is_async_program: bool) -> int:
    lm = raw_lm(base_url)

    async def one(question: str) -> int:
        stream = raw_stream(dspy.Predict("question -> answer"), is_async_program=is_async_program)
        count = 0
        async for value in stream(question=question):
            if isinstance(value, StreamResponse):
                count += 1
        return count

    with dspy.context(lm=lm, adapter=dspy.ChatAdapter()):
        return sum(await asyncio.gather(*(one(q) for q in questions)))


async def naive_raw_loop(base_url: str, questions: list[str]) -> int:
    return await _raw_loop(base_url, questions, is_async_program=False)


async def best_raw_loop(base_url: str, questions: list[str]) -> int:
    return await _raw_loop(base_url, questions, is_async_program=True)


async def dspy_stream_session(base_url: str, questions: list[str]) -> int:
    session = bench_session(base_url, concurrency=len(questions))

    async def consume(question: str) -> int:
        count = 0
        async for event in session.new_run(question).events():
            if isinstance(event, Token) and event.field == "answer":
                count += 1
        return count

    return sum(await asyncio.gather(*(consume(q) for q in questions)))


async def dspy_stream_headless(base_url: str, questions: list[str]) -> int:
    session = bench_session(base_url, concurrency=len(questions))
    settings = bench_settings(base_url, concurrency=len(questions))
    run = HeadlessRun(
        settings, questions, "concurrent", stdout=io.StringIO(), stderr=io.StringIO(), session=session
    )
    await run.run()
    return sum(r.metrics.tokens for r in session.runs)


CLIENTS: dict[str, Client] = {
    "naive raw loop (sync program)": naive_raw_loop,
    BASELINE: best_raw_loop,
    "dspy-stream session (StreamSession + events)": dspy_stream_session,
    "dspy-stream headless (HeadlessRun)": dspy_stream_headless,
    # Dashboard hook: add `"dspy-stream dashboard": dashboard_client`, an async function taking
    # (base_url, questions) that streams them all through the Textual app (headless, via
    # `App.run_test()`) and returns the answer tokens the panes received.
}


@dataclass(frozen=True)
class Timing:
    seconds: float
    cpu_seconds: float  # the client process's CPU time: steadier than wall time on a shared machine
    tokens: int


async def measure(base_url: str, clients: dict[str, Client]) -> dict[str, list[Timing]]:
    questions = [f"Question {i}: why stream answers token by token?" for i in range(STREAMS)]
    for client in clients.values():  # warm up: imports, connections, caches
        await client(base_url, questions[:2])
    timings: dict[str, list[Timing]] = {name: [] for name in clients}
    names = list(clients)
    for round_number in range(ROUNDS):
        # Rotate the order each round, so no client always runs first or last.
        for name in names[round_number % len(names) :] + names[: round_number % len(names)]:
            started, cpu_started = time.perf_counter(), time.process_time()
            tokens = await clients[name](base_url, questions)
            timings[name].append(
                Timing(time.perf_counter() - started, time.process_time() - cpu_started, tokens)
            )
    return timings


def main() -> None:
    with ServerProcess(tokens=TOKENS) as server:
        timings = asyncio.run(measure(server.base_url, CLIENTS))

    def figures(runs: list[Timing]) -> tuple[float, float, float]:
        # Contention from other work only adds time: the minimum is the steadiest wall figure.
        return (
            median([t.seconds for t in runs]),
            min(t.seconds for t in runs),
            median([t.cpu_seconds for t in runs]),
        )

    base = figures(timings[BASELINE])
    rows = []
    for name, runs in timings.items():
        seconds, fastest, cpu = figures(runs)
        ratios = (base[0] / seconds, base[1] / fastest, base[2] / cpu)
        rows.append((name, seconds, fastest, cpu, runs[-1].tokens, runs[-1].tokens / seconds, *ratios))
    print_table(
        f"Throughput: {STREAMS} streams x {TOKENS} tokens, unpaced server process, {ROUNDS} rounds",
        (
            "client",
            "median s",
            "min s",
            "cpu s",
            "answer tokens",
            "tokens/s",
            "x raw",
            "x raw (min)",
            "x raw (cpu)",
        ),
        rows,
        notes=(
            "x raw: the best raw loop's time over this client's (higher is faster);"
            " cpu: the client process's CPU time.",
        ),
    )
    seconds, fastest, cpu = figures(timings["dspy-stream headless (HeadlessRun)"])
    ratios = (base[0] / seconds, base[1] / fastest, base[2] / cpu)
    verdict = "met" if ratios[0] >= TARGET else "NOT met"
    print(
        f"target: dspy-stream headless >= {TARGET} x the best raw loop: {ratios[0]:.2f} x (median wall),"
        f" {ratios[1]:.2f} x (min wall), {ratios[2]:.2f} x (CPU): {verdict}"
    )


if __name__ == "__main__":
    main()
