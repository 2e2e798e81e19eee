"""Figures follow vLLM's bench serve definitions; checked on a controlled clock and on real timings."""

from __future__ import annotations

import math

import pytest

from tests.streaming.conftest import collect
from tests.support.openai_server import Behaviour
from tui.streaming.metrics import StreamMetrics, percentile, summarize


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def stream_with_gaps(clock: Clock, ttft: float, gaps: list[float]) -> StreamMetrics:
    m = StreamMetrics(clock=clock)
    m.start()
    m.start_attempt()
    clock.now += ttft
    m.record_token("answer")
    for gap in gaps:
        clock.now += gap
        m.record_token("answer")
    m.finish("done")
    return m


def test_per_stream_figures_match_their_definitions():
    clock = Clock()
    m = stream_with_gaps(clock, ttft=0.5, gaps=[0.1, 0.2, 0.3])
    assert m.ttft == pytest.approx(0.5)
    assert m.e2e == pytest.approx(1.1)
    assert m.tokens == 4
    assert m.itls == pytest.approx([0.1, 0.2, 0.3])
    assert m.tpot == pytest.approx((1.1 - 0.5) / 3)  # (e2e - ttft) / (tokens - 1)
    assert m.tokens_per_s == pytest.approx(3 / 0.6)  # over the streaming window
    assert m.itl_p50 == pytest.approx(0.2)


def test_live_rate_counts_the_last_second_only():
    clock = Clock()
    m = StreamMetrics(clock=clock)
    m.start_attempt()
    for _ in range(30):
        clock.now += 0.05
        m.record_token("answer")
    assert m.live_tokens_per_s() == pytest.approx(20, abs=1)
    clock.now += 2
    assert m.live_tokens_per_s() == 0


def test_a_retry_resets_token_figures_but_ttft_counts_from_the_stream_start():
    clock = Clock()
    m = StreamMetrics(clock=clock)
    m.start()
    m.start_attempt()
    clock.now += 0.2
    m.record_token("answer")
    clock.now += 1.0
    m.start_attempt()
    clock.now += 0.3
    m.record_token("answer")
    assert m.attempts == 2 and m.tokens == 1
    assert m.ttft == pytest.approx(1.5)


def test_percentiles_interpolate_like_numpy():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4, 5], 99) == pytest.approx(4.96)
    assert math.isnan(percentile([], 50))


def test_summary_pools_itls_and_counts_states():
    clock = Clock()
    a = stream_with_gaps(clock, 0.1, [0.01, 0.03])
    b = stream_with_gaps(clock, 0.3, [0.02])
    failed = StreamMetrics(clock=clock)
    failed.start()
    failed.finish("failed", "500 server error")
    s = summarize([a, b, failed], duration=2.0)
    assert (s.completed, s.failed, s.streams) == (2, 1, 3)
    assert s.total_tokens == 5
    assert s.output_throughput == pytest.approx(2.5)
    assert s.request_throughput == pytest.approx(1.0)
    assert sorted(s.itl.values) == pytest.approx([0.01, 0.02, 0.03])
    assert s.ttft.as_dict(1000)["mean"] == pytest.approx(200)
    assert s.error_rate == pytest.approx(1 / 3)


async def test_metrics_follow_real_token_timings(openai_server, make_run):
    openai_server.default = Behaviour(tokens=25, tokens_per_s=20, first_token_delay=0.3)
    run = make_run()
    await collect(run)
    m = run.metrics
    assert 0.3 <= m.ttft < 0.8
    # 20 tokens/s from the server: gaps of 50 ms between the tokens the listener delivers.
    assert m.itl_p50 == pytest.approx(0.05, abs=0.02)
    assert m.tokens_per_s == pytest.approx(20, rel=0.3)
    # The LM's own first chunk comes before the field's first token; the gap is listener overhead.
    assert m.lm_ttft is not None and 0.3 <= m.lm_ttft <= m.ttft


def test_waits_for_the_embedded_model_stay_out_of_ttft_and_ttfo_once_each_is_taken():
    clock = Clock()
    m = StreamMetrics(clock=clock, final_field="answer")
    m.start()
    m.start_attempt()
    m.begin_wait(ahead=2)
    clock.now += 3.0  # two streams ahead on the one local model
    m.end_wait()
    clock.now += 0.5
    m.record_token("reasoning")  # stage one
    m.begin_wait(ahead=1)
    clock.now += 2.0  # the second stage waits again
    m.end_wait()
    clock.now += 0.25
    m.record_token("answer")
    assert m.queue_time == pytest.approx(5.0)
    assert m.ttft == pytest.approx(0.5)  # not changed by the later wait
    assert m.ttfo == pytest.approx(0.75)
