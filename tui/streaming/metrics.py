"""Per-stream and run-wide figures, named and defined as vLLM's `bench serve` defines them.

- TTFT (time to first token): first streamed token of the delivered attempt minus the
  stream's start, so the wait through retries counts, as a user feels it; the wait for a
  turn on the model (the embedded model serves one stream at a time) does not: it is the
  queue time, reported apart as vLLM reports a request's client-side queue time.
- Queue time: how long a stream waited for its turn (the session's concurrency limit, the
  embedded model busy with other streams), before and between attempts.
- ITL (inter-token latency): every gap between two consecutive tokens of the delivered attempt.
- TPOT (time per output token): (e2e - TTFT) / (tokens - 1), the first token excluded.
- E2EL (end-to-end latency): the terminal event minus the stream's start.
- TTFO (time to first output token, AIPerf's): first token of the program's final output field
  minus the stream's start; beside TTFT, which counts any field (reasoning, earlier stages).
- Usage: input and output tokens as the provider counted them, and cost in USD where LiteLLM
  knows the model's price (None, never 0, for the local model or an unknown price).
- Output throughput: total output tokens / run duration; request throughput: completed / duration.

A "token" is one streamed chunk of an output field, as DSPy's listener delivers it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

Clock = Callable[[], float]
LIVE_WINDOW_S = 1.0
# A rate over fewer tokens, or a shorter window, says nothing (3 tokens in 0.2 ms: "9,955 tok/s").
MIN_RATE_TOKENS = 5
MIN_RATE_WINDOW_S = 0.05


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    return _percentile_of_sorted(sorted(values), q)


def _percentile_of_sorted(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class StreamMetrics:
    """Figures for one stream, updated on every event it produces."""

    clock: Clock = time.monotonic
    started_at: float | None = None
    attempt_started_at: float | None = None
    first_token_at: float | None = None
    lm_first_chunk_at: float | None = None
    last_token_at: float | None = None
    ended_at: float | None = None
    tokens: int = 0
    attempts: int = 0
    state: str = "queued"
    error: str = ""
    cache_hit: bool = False
    finish_reason: str | None = None  # the LM's, for the delivered attempt: "stop", "length", ...
    queue_time: float = 0.0
    queue_ahead: int | None = None  # streams ahead of this one while it waits for the model
    queue_fill: int = 0
    queue_fill_max: int = 0
    itls: list[float] = field(default_factory=list)
    field_ttfts: dict[str, float] = field(default_factory=dict)
    final_field: str | None = None
    first_output_at: float | None = None
    input_tokens: int | None = None
    provider_output_tokens: int | None = None
    cost_usd: float | None = None
    _recent: deque[float] = field(default_factory=deque, repr=False)
    _waiting_since: float | None = field(default=None, repr=False)
    _waited_since_start: float = field(default=0.0, repr=False)
    _waited_before_first_token: float = field(default=0.0, repr=False)
    _waited_before_first_output: float = field(default=0.0, repr=False)

    def start(self) -> None:
        self.started_at = self.clock()
        self.state = "starting"

    def start_attempt(self) -> None:
        """A new attempt streams from scratch: token figures describe the delivered attempt only."""
        now = self.clock()
        if self.started_at is None:
            self.started_at = now
        self.attempt_started_at = now
        self.attempts += 1
        self.first_token_at = self.last_token_at = self.lm_first_chunk_at = None
        self.finish_reason = None
        self.first_output_at = None
        self.tokens = 0
        self.itls.clear()
        self.field_ttfts.clear()
        self._recent.clear()

    def record_token(self, field_name: str) -> None:
        now = self.clock()
        if self.first_token_at is None:
            self.first_token_at = now
            self._waited_before_first_token = self._waited_since_start
            self.state = "streaming"
        elif self.last_token_at is not None:
            self.itls.append(now - self.last_token_at)
        if field_name not in self.field_ttfts and self.started_at is not None:
            self.field_ttfts[field_name] = now - self.started_at
        if field_name == self.final_field and self.first_output_at is None:
            self.first_output_at = now
            self._waited_before_first_output = self._waited_since_start
        self.last_token_at = now
        self.tokens += 1
        self._recent.append(now)

    def record_lm_chunk(self) -> None:
        """A raw chunk from the LM, before the adapter and listeners see it; only the first counts."""
        if self.lm_first_chunk_at is None:
            self.lm_first_chunk_at = self.clock()

    def begin_wait(self, ahead: int | None = None) -> None:
        """The stream waits for its turn; `ahead` streams are before it (None: not known)."""
        if self._waiting_since is None:
            self._waiting_since = self.clock()
        self.queue_ahead = ahead

    def end_wait(self) -> None:
        """Its turn came: the wait goes into `queue_time`, and out of TTFT once the stream started."""
        if self._waiting_since is None:
            return
        now = self.clock()
        waited = now - self._waiting_since
        self.queue_time += waited
        if self.started_at is not None:
            self._waited_since_start += now - max(self._waiting_since, self.started_at)
        self._waiting_since = None
        self.queue_ahead = None

    @property
    def waiting(self) -> bool:
        return self._waiting_since is not None

    @property
    def truncated(self) -> bool:
        """The answer was cut by the token limit."""
        return self.finish_reason == "length"

    def silence(self) -> float | None:
        """Seconds since the last token (or the attempt's start) while streaming; None otherwise."""
        if self.ended_at is not None or self.waiting:
            return None
        since = self.last_token_at if self.last_token_at is not None else self.attempt_started_at
        return None if since is None else self.clock() - since

    def record_queue_fill(self, size: int) -> None:
        self.queue_fill = size
        self.queue_fill_max = max(self.queue_fill_max, size)

    def finish(self, state: str, error: str = "") -> None:
        self.ended_at = self.clock()
        self.state = state
        self.error = error

    @property
    def ttft(self) -> float | None:
        if self.first_token_at is None or self.started_at is None:
            return None
        return self.first_token_at - self.started_at - self._waited_before_first_token

    @property
    def ttfo(self) -> float | None:
        """Time to the first token of the final output field (AIPerf's TTFO); like TTFT, waits
        for the embedded model are not counted."""
        if self.first_output_at is None or self.started_at is None:
            return None
        return self.first_output_at - self.started_at - self._waited_before_first_output

    def record_usage(
        self, input_tokens: int | None, output_tokens: int | None, cost_usd: float | None
    ) -> None:
        self.input_tokens = input_tokens
        self.provider_output_tokens = output_tokens
        self.cost_usd = cost_usd

    @property
    def lm_ttft(self) -> float | None:
        """The LM's own first chunk; TTFT minus this is adapter and listener overhead."""
        if self.lm_first_chunk_at is None or self.started_at is None:
            return None
        return self.lm_first_chunk_at - self.started_at - self._waited_since_start

    @property
    def e2e(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else self.clock()
        return end - self.started_at

    @property
    def tpot(self) -> float | None:
        if self.tokens < 2 or self.ttft is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at - self.ttft) / (self.tokens - 1)

    @property
    def tokens_per_s(self) -> float | None:
        """Tokens over the streaming window, first token to last."""
        if self.tokens < 2 or self.first_token_at is None or self.last_token_at is None:
            return None
        window = self.last_token_at - self.first_token_at
        return (self.tokens - 1) / window if window > 0 else None

    def shown_tokens_per_s(self) -> float | None:
        """The rate a screen shows: the last second's while streaming, the whole stream's once ended.

        None until it means something: a few tokens, or a few in a burst, make no rate.
        """
        if self.tokens < MIN_RATE_TOKENS or self.first_token_at is None:
            return None
        if self.ended_at is None:
            return (
                self.live_tokens_per_s() if self.clock() - self.first_token_at >= MIN_RATE_WINDOW_S else None
            )
        last = self.last_token_at if self.last_token_at is not None else self.first_token_at
        return self.tokens_per_s if last - self.first_token_at >= MIN_RATE_WINDOW_S else None

    def live_tokens_per_s(self) -> float:
        """Tokens in the last second (zero once a stream has gone quiet)."""
        horizon = self.clock() - LIVE_WINDOW_S
        while self._recent and self._recent[0] < horizon:
            self._recent.popleft()
        return len(self._recent) / LIVE_WINDOW_S

    @property
    def itl_p50(self) -> float | None:
        return percentile(self.itls, 50) if self.itls else None

    @property
    def itl_p95(self) -> float | None:
        return percentile(self.itls, 95) if self.itls else None

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state,
            "attempts": self.attempts,
            "tokens": self.tokens,
            "ttft_s": self.ttft,
            "lm_ttft_s": self.lm_ttft,
            "tpot_s": self.tpot,
            "e2el_s": self.e2e,
            "tokens_per_s": self.tokens_per_s,
            "itl_p50_s": self.itl_p50,
            "itl_p95_s": self.itl_p95,
            "queue_fill_max": self.queue_fill_max,
            "cache_hit": self.cache_hit,
            "finish_reason": self.finish_reason,
            "queue_time_s": self.queue_time,
            "field_ttfts_s": dict(self.field_ttfts),
            "ttfo_s": self.ttfo,
            "input_tokens": self.input_tokens,
            "provider_output_tokens": self.provider_output_tokens,
            "cost_usd": self.cost_usd,
            "error": self.error,
        }


@dataclass(frozen=True)
class Distribution:
    """mean, median, std, min, max and p50/p90/p95/p99 of one figure across streams."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Distribution:
        return cls(tuple(v for v in values if v is not None and not math.isnan(v)))

    def as_dict(self, scale: float = 1.0) -> dict[str, float]:
        if not self.values:
            return {}
        # Sorted once, and the deviation in floats: `statistics.pstdev` sums exact fractions,
        # 50 ms for the ITLs of 32 x 1,000 tokens, at the end of every run.
        v = sorted(x * scale for x in self.values)
        mean = math.fsum(v) / len(v)
        return {
            "mean": mean,
            "median": _percentile_of_sorted(v, 50),
            "std": math.sqrt(math.fsum((x - mean) ** 2 for x in v) / len(v)),
            "min": v[0],
            "max": v[-1],
            "p50": _percentile_of_sorted(v, 50),
            "p90": _percentile_of_sorted(v, 90),
            "p95": _percentile_of_sorted(v, 95),
            "p99": _percentile_of_sorted(v, 99),
        }


@dataclass(frozen=True)
class RunSummary:
    """Figures across the streams of one run."""

    streams: int
    completed: int
    failed: int
    cancelled: int
    total_tokens: int
    duration: float
    retries: int
    ttft: Distribution
    tpot: Distribution
    itl: Distribution
    e2el: Distribution
    ttfo: Distribution = Distribution(())
    total_input_tokens: int | None = None
    total_provider_output_tokens: int | None = None
    total_cost_usd: float | None = None

    @property
    def request_throughput(self) -> float:
        return self.completed / self.duration if self.duration > 0 else 0.0

    @property
    def output_throughput(self) -> float:
        return self.total_tokens / self.duration if self.duration > 0 else 0.0

    @property
    def error_rate(self) -> float:
        return self.failed / self.streams if self.streams else 0.0


def summarize(metrics: Sequence[StreamMetrics], duration: float) -> RunSummary:
    done = [m for m in metrics if m.state == "done"]
    return RunSummary(
        streams=len(metrics),
        completed=len(done),
        failed=sum(m.state == "failed" for m in metrics),
        cancelled=sum(m.state == "cancelled" for m in metrics),
        total_tokens=sum(m.tokens for m in done),
        duration=duration,
        retries=sum(max(m.attempts - 1, 0) for m in metrics),
        ttft=Distribution.of(m.ttft for m in done),
        tpot=Distribution.of(m.tpot for m in done),
        itl=Distribution.of(gap for m in done for gap in m.itls),
        e2el=Distribution.of(m.e2e for m in done),
        ttfo=Distribution.of(m.ttfo for m in done),
        total_input_tokens=_total(m.input_tokens for m in metrics),
        total_provider_output_tokens=_total(m.provider_output_tokens for m in metrics),
        total_cost_usd=_total(m.cost_usd for m in metrics),
    )


def _total(values: Iterable[float | int | None]) -> float | int | None:
    """The sum of the known values; None when none is known (no price is not a price of 0)."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None
