"""Fairness: 32 streams paced at 50 tokens/s start together; their first tokens arrive together.

Every client starts all streams at once and notes when its consumer receives each answer token.
The first-token spread is the slowest stream's first token minus the fastest's.
Target: dspy-stream's spread <= 0.2 s. The best raw loop is the baseline; the naive raw loop
shows what a thread pool of 8 does to 32 streams.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import dspy
from dspy.streaming import StreamResponse

from tests.benchmarks import bench_session, median, print_table, raw_lm, raw_stream
from tests.support.openai_server import ServerProcess
from tui.streaming.events import Token

STREAMS, TOKENS, TOKENS_PER_S, ROUNDS = 32, 50, 50.0, 3
TARGET_S = 0.2

# A client streams every question at once; it returns, per stream, when each answer token arrived.
Arrivals = list[list[float]]
Client = Callable[[str, list[str]], Awaitable[Arrivals]]


async def _raw(base_url: str, questions: list[str], *, is_async_program: bool) -> Arrivals:
    async def one(question: str) -> list[float]:
        stream = raw_stream(dspy.Predict("question -> answer"), is_async_program=is_async_program)
        return [time.perf_counter() async for v in stream(question=question) if isinstance(v, StreamResponse)]

    with dspy.context(lm=raw_lm(base_url), adapter=dspy.ChatAdapter()):
        return list(await asyncio.gather(*(one(q) for q in questions)))


async def naive_raw_loop(base_url: str, questions: list[str]) -> Arrivals:
    return await _raw(base_url, questions, is_async_program=False)


async def best_raw_loop(base_url: str, questions: list[str]) -> Arrivals:
    return await _raw(base_url, questions, is_async_program=True)


async def dspy_stream(base_url: str, questions: list[str]) -> Arrivals:
    session = bench_session(base_url, concurrency=len(questions))

    async def one(question: str) -> list[float]:
        return [
            time.perf_counter()
            async for event in session.new_run(question).events()
            if isinstance(event, Token) and event.field == "answer"
        ]

    return list(await asyncio.gather(*(one(q) for q in questions)))


CLIENTS: dict[str, Client] = {
    "naive raw loop (sync program)": naive_raw_loop,
    "best raw loop (is_async_program=True)": best_raw_loop,
    "dspy-stream session": dspy_stream,
}
BASELINE = "best raw loop (is_async_program=True)"


def figures(started: float, arrivals: Arrivals) -> dict[str, float]:
    firsts = [times[0] - started for times in arrivals if times]
    rates = [(len(t) - 1) / (t[-1] - t[0]) for t in arrivals if len(t) > 1 and t[-1] > t[0]]
    return {
        "spread": max(firsts) - min(firsts),
        "ttft_min": min(firsts),
        "ttft_max": max(firsts),
        "rate_min": min(rates),
        "rate_max": max(rates),
        "streams": sum(bool(t) for t in arrivals),
    }


async def measure(base_url: str) -> dict[str, list[dict[str, float]]]:
    questions = [f"Question {i}: what is fair scheduling?" for i in range(STREAMS)]
    for client in CLIENTS.values():
        await client(base_url, questions[:2])
    results: dict[str, list[dict[str, float]]] = {name: [] for name in CLIENTS}
    for _ in range(ROUNDS):
        for name, client in CLIENTS.items():
            started = time.perf_counter()
            results[name].append(figures(started, await client(base_url, questions)))
    return results


def main() -> None:
    with ServerProcess(tokens=TOKENS, tokens_per_s=TOKENS_PER_S) as server:
        results = asyncio.run(measure(server.base_url))
    base = median([r["spread"] for r in results[BASELINE]])
    rows = []
    for name, rounds in results.items():
        spread = median([r["spread"] for r in rounds])
        rows.append(
            (
                name,
                spread,
                max(r["spread"] for r in rounds),
                median([r["ttft_min"] for r in rounds]),
                median([r["ttft_max"] for r in rounds]),
                f"{min(r['rate_min'] for r in rounds):.1f}-{max(r['rate_max'] for r in rounds):.1f}",
                spread / base if base > 0 else float("nan"),
            )
        )
    print_table(
        f"Fairness: {STREAMS} streams x {TOKENS} tokens paced at {TOKENS_PER_S:g} tokens/s, started together,"
        f" median of {ROUNDS} rounds (seconds)",
        (
            "client",
            "1st-token spread",
            "worst spread",
            "fastest ttft",
            "slowest ttft",
            "stream tok/s",
            "x best raw",
        ),
        rows,
    )
    ours = median([r["spread"] for r in results["dspy-stream session"]])
    worst = max(r["spread"] for r in results["dspy-stream session"])
    verdict = "met" if worst <= TARGET_S else "NOT met"
    print(
        f"target: dspy-stream first-token spread <= {TARGET_S} s:"
        f" median {ours:.3f} s, worst {worst:.3f} s, {verdict}"
    )


if __name__ == "__main__":
    main()
