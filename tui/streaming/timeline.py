"""Run-wide throughput per second, as vLLM's `bench serve` computes `max_output_tokens_per_s`.

vLLM rebuilds each token's time from the request's start, its TTFT and its ITLs, counts tokens
in 1-second buckets from the earliest start among successful requests, and reports the fullest
bucket; `max_concurrent_requests` is the most successful requests active in one bucket. Only
successful requests count. StreamMetrics keeps all that is needed (start, first token, gaps).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tui.streaming.metrics import StreamMetrics


@dataclass(frozen=True)
class TimedStream:
    """One successful stream on the run's clock, in seconds."""

    started_at: float
    ttft: float
    itls: Sequence[float]
    e2el: float


@dataclass(frozen=True)
class ThroughputTimeline:
    """Output tokens completed, and requests active, in each 1-second bucket of a run."""

    tokens_per_second: tuple[int, ...]
    concurrent_requests: tuple[int, ...]

    @classmethod
    def of(cls, streams: Iterable[TimedStream]) -> ThroughputTimeline:
        streams = list(streams)
        if not streams:
            return cls((), ())
        origin = min(s.started_at for s in streams)
        end = max(s.started_at + s.e2el for s in streams)
        buckets = math.ceil(end - origin) + 1
        tokens = [0] * buckets
        active = [0] * buckets
        for stream in streams:
            at = stream.started_at + stream.ttft
            times = [at]
            for gap in stream.itls:
                at += gap
                times.append(at)
            for t in times:
                second = int(t - origin)
                if 0 <= second < buckets:
                    tokens[second] += 1
            first, last = int(stream.started_at - origin), int(stream.started_at + stream.e2el - origin)
            for second in range(first, last + 1):
                active[second] += 1
        return cls(tuple(tokens), tuple(active))

    @classmethod
    def from_metrics(cls, metrics: Iterable[StreamMetrics]) -> ThroughputTimeline:
        """From the streams that ended with an answer (those vLLM calls successful)."""
        return cls.of(
            TimedStream(m.started_at, m.ttft, m.itls, m.e2e)
            for m in metrics
            if m.state == "done" and m.started_at is not None and m.ttft is not None and m.e2e is not None
        )

    @property
    def max_output_tokens_per_s(self) -> float:
        return float(max(self.tokens_per_second, default=0))

    @property
    def max_concurrent_requests(self) -> int:
        return max(self.concurrent_requests, default=0)
