"""The embedded model through dspy-stream, against raw llama-cpp-python streaming of the same prompt.

Both paths run the same GGUF file with the same settings (n_ctx, threads, greedy, repeat penalty),
the same chat messages (what `PlainAdapter` sends for `question -> answer`) and the same max_tokens,
taking turns round by round after both have loaded and warmed up:

- raw: `Llama.create_chat_completion(stream=True)` on the calling thread, as llama-cpp-python's
  docs show it; a token is a chunk with content.
- dspy-stream: `StreamSession(Settings(model="local"))`, consuming `run.events()` as the CLI does;
  tokens are the engine's own count (`LocalModel.generated_tokens`), which counts chunks with
  content the same way, so both columns count the same thing. "chunks" are the Token events
  DSPy's stream listener delivers, which may join tokens.

Targets: dspy-stream tokens/s (generated tokens / time from the call to the stream's end, median
over rounds) >= 0.9 x raw; first-token latency with the model loaded (StreamMetrics.ttft) <= 0.3 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import dspy

from tests.benchmarks import median, print_table
from tui.config import Settings
from tui.models.local_engine import (
    CONTEXT_TOKENS,
    GENERATION_THREADS,
    REPEAT_PENALTY,
    LocalModel,
    model_path_for,
    shared_local_model,
)
from tui.models.plain_adapter import PlainAdapter
from tui.programs.loader import DEFAULT_SIGNATURE as SIGNATURE
from tui.streaming.events import Done, Token
from tui.streaming.metrics import percentile
from tui.streaming.session import StreamSession

ROUNDS, MAX_TOKENS = 8, 128
TTFT_ROUNDS, TTFT_MAX_TOKENS = 12, 16
# Long enough that the greedy answer runs to max_tokens, despite the "one or two sentences" prompt.
QUESTION = "Tell me a long story about a dragon and a knight."
TTFT_QUESTION = "What is the capital of France?"
TARGET_RATIO, TARGET_TTFT_S = 0.9, 0.3


@dataclass
class Round:
    first_token: float  # seconds from the call to the consumer holding the first answer text
    elapsed: float  # seconds from the call to the end of the stream
    tokens: int  # generated tokens, as llama counts them
    chunks: int  # pieces of text the consumer received
    text: str
    ttft: float | None = None  # StreamMetrics.ttft (dspy-stream only)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed


@dataclass
class Results:
    raw: list[Round]
    ours: list[Round]
    raw_short: list[Round]
    ours_short: list[Round]
    cold_start_s: float  # the first stream of the process, model load included


def plain_messages(question: str) -> list[dict[str, str]]:
    """The chat the plain adapter sends the local model for the `answer` field."""
    signature = dspy.Predict(SIGNATURE).signature
    return PlainAdapter().field_messages(signature, [], {"question": question}, {}, "answer")


def load_raw_llama(settings: Settings) -> Any:
    """A second Llama over the same file with the engine's settings; mmap shares the weights' pages."""
    from llama_cpp import Llama

    with contextlib.redirect_stderr(io.StringIO()):
        return Llama(
            model_path=str(model_path_for(settings.model)),
            n_ctx=CONTEXT_TOKENS,
            n_threads=GENERATION_THREADS,
            n_threads_batch=GENERATION_THREADS,
            verbose=False,
        )


def raw_round(llama: Any, question: str, max_tokens: int) -> Round:
    messages = plain_messages(question)
    llama.reset()  # as the engine does: no prompt-prefix reuse between rounds
    started = time.perf_counter()
    first = None
    pieces: list[str] = []
    for chunk in llama.create_chat_completion(
        messages=messages,
        stream=True,
        max_tokens=max_tokens,
        temperature=0.0,
        repeat_penalty=REPEAT_PENALTY,
    ):
        content = chunk["choices"][0]["delta"].get("content")
        if content:
            if first is None:
                first = time.perf_counter() - started
            pieces.append(content)
    elapsed = time.perf_counter() - started
    assert first is not None, "raw llama produced no text"
    return Round(first, elapsed, len(pieces), len(pieces), "".join(pieces))


async def dspy_stream_round(session: StreamSession, model: LocalModel, question: str) -> Round:
    before = model.generated_tokens
    started = time.perf_counter()
    first = None
    pieces: list[str] = []
    run = session.new_run(question)
    async for event in run.events():
        if isinstance(event, Token) and event.field == "answer":
            if first is None:
                first = time.perf_counter() - started
            pieces.append(event.text)
    elapsed = time.perf_counter() - started
    assert isinstance(run.terminal, Done), f"dspy-stream ended with {run.terminal!r}"
    assert first is not None, "dspy-stream delivered no answer token"
    # The worker may still be closing the job: let it finish before the raw path takes the CPU.
    model.wait_idle(timeout=10)
    tokens = model.generated_tokens - before
    return Round(first, elapsed, tokens, len(pieces), "".join(pieces), run.metrics.ttft)


async def take_turns(
    session: StreamSession, model: LocalModel, llama: Any, question: str, max_tokens: int, rounds: int
) -> tuple[list[Round], list[Round]]:
    raw: list[Round] = []
    ours: list[Round] = []
    for i in range(rounds):
        # Alternate which goes first, so neither always runs right after the other.
        if i % 2:
            raw.append(raw_round(llama, question, max_tokens))
            ours.append(await dspy_stream_round(session, model, question))
        else:
            ours.append(await dspy_stream_round(session, model, question))
            raw.append(raw_round(llama, question, max_tokens))
    return raw, ours


async def measure() -> Results:
    settings = Settings(max_tokens=MAX_TOKENS)
    ttft_settings = settings.replace(max_tokens=TTFT_MAX_TOKENS)
    model = shared_local_model(model_path_for(settings.model))
    session, ttft_session = StreamSession(settings), StreamSession(ttft_settings)

    started = time.perf_counter()
    await dspy_stream_round(ttft_session, model, TTFT_QUESTION)  # loads the model
    cold_s = time.perf_counter() - started
    llama = load_raw_llama(settings)
    raw_round(llama, TTFT_QUESTION, TTFT_MAX_TOKENS)  # warm-up
    await dspy_stream_round(ttft_session, model, TTFT_QUESTION)

    raw, ours = await take_turns(session, model, llama, QUESTION, MAX_TOKENS, ROUNDS)
    raw_short, ours_short = await take_turns(
        ttft_session, model, llama, TTFT_QUESTION, TTFT_MAX_TOKENS, TTFT_ROUNDS
    )
    return Results(raw, ours, raw_short, ours_short, cold_s)


def same_text(a: Round, b: Round) -> bool:
    # DSPy's listener trims whitespace at a field's edges.
    return a.text.split() == b.text.split()


def main() -> None:
    started = time.perf_counter()
    load_before = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    results = asyncio.run(measure())
    raw, ours, raw_short, ours_short = results.raw, results.ours, results.raw_short, results.ours_short

    raw_rate = median([r.tokens_per_s for r in raw])

    def rate_row(name: str, rounds: list[Round]) -> tuple[object, ...]:
        rates = [r.tokens_per_s for r in rounds]
        return (
            name,
            median([float(r.tokens) for r in rounds]),
            median([float(r.chunks) for r in rounds]),
            median([r.elapsed for r in rounds]),
            median(rates),
            max(rates),
            median([r.first_token for r in rounds]),
            median(rates) / raw_rate,
        )

    ratio = median([r.tokens_per_s for r in ours]) / raw_rate
    paired = [o.tokens_per_s / r.tokens_per_s for r, o in zip(raw, ours, strict=True)]
    matched = sum(same_text(r, o) for r, o in zip(raw + raw_short, ours + ours_short, strict=True))
    print_table(
        f"Local model throughput: {ROUNDS} rounds each, taking turns, max_tokens {MAX_TOKENS}"
        f" (threads {GENERATION_THREADS}, n_ctx {CONTEXT_TOKENS}, greedy,"
        f" repeat penalty {REPEAT_PENALTY})",
        ("path", "tokens", "chunks", "e2e s", "tok/s", "best tok/s", "first s", "x raw"),
        [
            rate_row("raw llama create_chat_completion(stream=True)", raw),
            rate_row("dspy-stream session, run.events()", ours),
        ],
        notes=[
            "medians over rounds; tok/s = generated tokens / (call -> end of stream); best = fastest round",
            f"per-round tok/s, raw:  {[round(r.tokens_per_s, 1) for r in raw]}",
            f"per-round tok/s, ours: {[round(r.tokens_per_s, 1) for r in ours]}",
            f"paired ratios (ours/raw, same round): {[round(p, 3) for p in paired]},"
            f" median {median(paired):.3f}",
            f"same greedy text in both paths: {matched} of {len(raw) + len(raw_short)} rounds",
            f"target tok/s >= {TARGET_RATIO:g} x raw: {ratio:.3f} x,"
            f" {'met' if ratio >= TARGET_RATIO else 'NOT met'}",
        ],
    )

    raw_first = [r.first_token for r in raw + raw_short]
    metric_ttft = [o.ttft for o in ours + ours_short if o.ttft is not None]
    consumer_first = [o.first_token for o in ours + ours_short]

    def ttft_row(name: str, values: list[float]) -> tuple[object, ...]:
        ms = [v * 1000 for v in values]
        return (name, len(ms), median(ms), percentile(ms, 90), min(ms), statistics.fmean(ms))

    ttft_median = median(metric_ttft)
    print_table(
        f"Local model first token, model loaded: {ROUNDS + TTFT_ROUNDS} streams each"
        f" ({ROUNDS} long, {TTFT_ROUNDS} with max_tokens {TTFT_MAX_TOKENS}) (ms)",
        ("measure", "n", "median", "p90", "min", "mean"),
        [
            ttft_row("raw llama: call -> first content chunk", raw_first),
            ttft_row("dspy-stream: StreamMetrics.ttft", metric_ttft),
            ttft_row("dspy-stream: new_run() -> first Token at consumer", consumer_first),
        ],
        notes=[
            f"first stream of the process, model load included: {results.cold_start_s:.2f} s",
            f"target TTFT <= {TARGET_TTFT_S * 1000:g} ms (median StreamMetrics.ttft):"
            f" {ttft_median * 1000:.0f} ms,"
            f" {'met' if ttft_median <= TARGET_TTFT_S else 'NOT met'};"
            f" p90 {percentile(metric_ttft, 90) * 1000:.0f} ms",
            f"load average before the run: {load_before} (the header's is at the end, this run included);"
            f" whole benchmark: {time.perf_counter() - started:.0f} s",
        ],
    )


if __name__ == "__main__":
    main()
