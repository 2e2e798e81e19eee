"""Reports: vLLM-named figures from real streams against the loopback server, as JSON and CSV."""

from __future__ import annotations

import asyncio
import csv
import json
import math
import uuid
from pathlib import Path

import dspy
import pytest

from tests.support.conditions import until
from tests.support.openai_server import TEST_API_KEY, Behaviour, OpenAIServer
from tui.config import ConfigError, Settings
from tui.report import (
    DISTRIBUTION_STATS,
    StreamFigures,
    build_report,
    parse_slo,
    progress_writer,
    report_format,
    summary_csv_path,
    write_report,
)
from tui.streaming.session import StreamSession
from tui.streaming.timeline import ThroughputTimeline, TimedStream

VLLM_KEYS = (
    "date", "model_id", "num_prompts", "max_concurrency", "duration", "completed", "failed",
    "total_output_tokens", "request_throughput", "request_goodput", "output_throughput",
    "max_output_tokens_per_s", "output_lens", "ttfts", "itls", "generated_texts", "errors",
)  # fmt: skip
OUR_PER_REQUEST_KEYS = ("latencies", "successes", "attempts", "states", "cache_hits", "field_ttfts")


def make_session(server: OpenAIServer, **changes: object) -> StreamSession:
    settings = Settings(
        model="openai/test-model", api_base=server.base_url, retry_delay=0.01, timeout=5.0, concurrency=1
    ).replace(**changes)
    lm = dspy.LM(**server.lm_kwargs(), cache=settings.cache, num_retries=0)
    return StreamSession(settings, lm=lm, adapter=dspy.ChatAdapter())


async def run_all(session: StreamSession, questions: list[str]) -> None:
    runs = [session.new_run(q) for q in questions]
    await asyncio.gather(*(run.wait() for run in runs))


@pytest.fixture
def finished_session(openai_server: OpenAIServer) -> StreamSession:
    """Four streams, one at a time: healthy, retried once, refused (401), and a cache hit."""
    session = make_session(openai_server, cache=True, max_retries=2)
    openai_server.default = Behaviour(tokens=12)
    repeated = f"What is Rust? {uuid.uuid4()}"
    openai_server.script(
        Behaviour(tokens=12),
        Behaviour(status=503),
        Behaviour(tokens=12),
        Behaviour(status=401),
    )
    asyncio.run(run_all(session, [repeated, f"Retried {uuid.uuid4()}", f"Refused {uuid.uuid4()}", repeated]))
    return session


# -- SLOs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ttft=500ms,tpot=50ms", {"ttft": 500.0, "tpot": 50.0}),
        ("ttft:0.5s e2el=2s", {"ttft": 500.0, "e2el": 2000.0}),
        ("tpot=40", {"tpot": 40.0}),
        ("TTFT=250us", {"ttft": 0.25}),
    ],
)
def test_slo_targets_are_read_in_milliseconds(text: str, expected: dict[str, float]) -> None:
    assert parse_slo(text) == expected


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", "slo is empty"),
        ("ttft", "expected NAME=VALUE"),
        ("latency=5ms", "unknown figure 'latency'"),
        ("ttft=5min", "unknown unit 'min'"),
        ("ttft=0ms", "more than 0"),
        ("ttft=5ms,ttft=6ms", "given twice"),
        ("ttft=fast", "expected NAME=VALUE"),
    ],
)
def test_a_bad_slo_is_one_line(text: str, names: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_slo(text)
    assert names in str(caught.value)
    assert "\n" not in str(caught.value)


def figures(
    state: str = "done", ttft: float = 0.1, tpot: float | None = 0.01, e2el: float = 1.0
) -> StreamFigures:
    return StreamFigures(1, "q", state, 1, 10, 0.0, ttft, tpot, e2el, 10.0)


def test_goodput_counts_a_successful_stream_only_if_it_meets_every_target() -> None:
    slo = {"ttft": 100.0, "tpot": 10.0}
    assert figures().meets(slo)  # equal to the target meets it, as in vLLM
    assert not figures(ttft=0.101).meets(slo)
    assert not figures(tpot=0.011).meets(slo)
    assert figures(tpot=None).meets(slo)  # a one-token answer has a TPOT of 0
    assert not figures(state="failed").meets(slo)
    assert not figures(e2el=3.0).meets({"e2el": 2000.0})


# -- max_output_tokens_per_s ------------------------------------------------------------------------


def test_throughput_timeline_buckets_tokens_by_the_second_as_vllm_does() -> None:
    # Tokens: a at 0.5, 0.75 | 1.0, 1.25, 1.5; b at 0.75 | 1.0, 1.25, 1.5, 1.75 | 2.0; c at | 2.5.
    a = TimedStream(started_at=0.0, ttft=0.5, itls=[0.25] * 4, e2el=1.5)
    b = TimedStream(started_at=0.5, ttft=0.25, itls=[0.25] * 5, e2el=1.5)
    c = TimedStream(started_at=2.0, ttft=0.5, itls=[], e2el=0.5)
    timeline = ThroughputTimeline.of([a, b, c])
    assert timeline.tokens_per_second == (3, 7, 2, 0)
    assert timeline.max_output_tokens_per_s == 7.0
    assert timeline.concurrent_requests == (2, 2, 2, 0)
    assert timeline.max_concurrent_requests == 2
    assert ThroughputTimeline.of([]).max_output_tokens_per_s == 0.0


# -- the JSON report --------------------------------------------------------------------------------


def test_the_json_report_has_vllm_keys_and_agrees_with_the_session(
    finished_session: StreamSession, tmp_path: Path
) -> None:
    path = tmp_path / "report.json"
    assert write_report(path, finished_session) == [path]
    text = path.read_text(encoding="utf-8")
    report = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    summary = finished_session.summary()

    for key in (*VLLM_KEYS, *OUR_PER_REQUEST_KEYS, "queue_fill_max"):
        assert key in report, key
    for figure in ("ttft", "tpot", "itl", "e2el"):
        for stat in DISTRIBUTION_STATS:
            assert f"{stat}_{figure}_ms" in report
    assert report["num_prompts"] == 4
    assert report["model_id"] == "openai/test-model"
    assert (report["completed"], report["failed"]) == (3, 1)
    assert report["total_output_tokens"] == summary.total_tokens
    assert report["duration"] == pytest.approx(summary.duration)
    assert report["request_throughput"] == pytest.approx(summary.request_throughput)
    assert report["output_throughput"] == pytest.approx(summary.output_throughput)
    assert report["mean_ttft_ms"] == pytest.approx(summary.ttft.as_dict()["mean"] * 1000)
    assert report["p99_itl_ms"] == pytest.approx(summary.itl.as_dict(1000)["p99"])
    assert report["request_goodput"] is None  # no SLO given
    assert report["total_retries"] == summary.retries == 1
    assert report["error_rate"] == pytest.approx(0.25)

    assert report["states"] == ["done", "done", "failed", "done"]
    assert report["successes"] == [True, True, False, True]
    assert report["attempts"] == [1, 2, 1, 1]
    assert report["cache_hits"] == [False, False, False, True]
    assert report["total_cache_hits"] == 1
    assert report["errors"][2] and not report["errors"][0]
    assert report["generated_texts"][0] == report["generated_texts"][3] != ""
    for i in (0, 1):  # the streamed answers: every gap between tokens, in seconds
        assert len(report["itls"][i]) == report["output_lens"][i] - 1
        assert report["ttfts"][i] == pytest.approx(report["field_ttfts"][i]["answer"])
        assert 0 < report["ttfts"][i] < report["latencies"][i]
    # vLLM's timeline: every token of a successful stream lands in exactly one second.
    assert report["max_output_tokens_per_s"] <= report["total_output_tokens"]
    assert report["max_output_tokens_per_s"] == report["total_output_tokens"]  # the run takes < 1 s


def test_the_report_keeps_no_keys_or_credentials(openai_server: OpenAIServer, tmp_path: Path) -> None:
    base = openai_server.base_url.replace("http://", "http://admin:hunter2@")
    session = make_session(openai_server, api_base=base)
    asyncio.run(run_all(session, ["What is Rust?"]))
    path = tmp_path / "report.json"
    write_report(path, session)
    text = path.read_text(encoding="utf-8")
    assert "hunter2" not in text and TEST_API_KEY not in text
    saved = json.loads(text)["settings"]
    assert saved["api_base"] == openai_server.base_url
    assert "sources" not in saved


def test_goodput_uses_the_slo_setting(openai_server: OpenAIServer) -> None:
    session = make_session(openai_server, slo="ttft=60s,tpot=60s", concurrency=4)
    asyncio.run(run_all(session, [f"q{i}" for i in range(4)]))
    report = build_report(session)
    assert report["slo"] == {"ttft_ms": 60000.0, "tpot_ms": 60000.0}
    assert report["request_goodput"] == pytest.approx(report["request_throughput"])
    assert report["slo_met"] == [True] * 4
    strict = build_report(session, slo={"ttft": 0.001})
    assert strict["request_goodput"] == 0.0
    assert strict["slo_met"] == [False] * 4


# -- the CSV report ---------------------------------------------------------------------------------


def test_the_csv_report_is_a_row_per_stream_and_a_summary_file(
    finished_session: StreamSession, tmp_path: Path
) -> None:
    path = tmp_path / "run.csv"
    written = write_report(path, finished_session)
    assert written == [path, summary_csv_path(path)] == [path, tmp_path / "run.summary.csv"]

    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["stream"] for row in rows] == ["1", "2", "3", "4"]
    assert [row["state"] for row in rows] == ["done", "done", "failed", "done"]
    assert [row["cache_hit"] for row in rows] == ["False", "False", "False", "True"]
    assert rows[1]["attempts"] == "2"
    assert float(rows[0]["ttft_ms"]) > 0 and float(rows[0]["answer_ttft_ms"]) == float(rows[0]["ttft_ms"])
    assert rows[0]["generated_text"] == finished_session.runs[0].record.text
    assert rows[2]["error"]

    with (tmp_path / "run.summary.csv").open(newline="", encoding="utf-8") as handle:
        summary = dict(csv.reader(handle))
    assert summary.pop("figure") == "value"
    assert summary["num_prompts"] == "4"
    assert summary["completed"] == "3"
    assert math.isclose(float(summary["request_throughput"]), finished_session.summary().request_throughput)
    assert summary["settings.model"] == "openai/test-model"
    assert "p99_e2el_ms" in summary


def test_the_report_format_comes_from_the_file_name(tmp_path: Path) -> None:
    assert report_format(tmp_path / "a.JSON") == "json"
    assert report_format(tmp_path / "a.csv") == "csv"
    with pytest.raises(ConfigError, match=r"\.json or \.csv"):
        report_format(tmp_path / "a.txt")


# -- progress ---------------------------------------------------------------------------------------


async def test_progress_lines_are_appended_while_a_run_goes(
    openai_server: OpenAIServer, tmp_path: Path
) -> None:
    openai_server.default = Behaviour(tokens=20, tokens_per_s=50)
    session = make_session(openai_server, concurrency=4)
    path = tmp_path / "progress.jsonl"
    path.write_text('{"earlier": "run"}\n', encoding="utf-8")
    writer = asyncio.create_task(progress_writer(path, session, interval=0.1))
    await run_all(session, [f"q{i}" for i in range(4)])
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer

    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines[0] == {"earlier": "run"}  # appended, not overwritten
    records = lines[1:]
    assert len(records) >= 4
    elapsed = [r["elapsed_s"] for r in records]
    assert elapsed == sorted(elapsed)
    assert any(r["live_output_tokens_per_s"] > 0 for r in records)
    last = records[-1]
    assert any(0 < r["streamed_tokens"] < last["streamed_tokens"] for r in records)  # seen mid-run
    assert last["final"] is True
    assert (last["num_prompts"], last["completed"]) == (4, 4)
    assert last["total_output_tokens"] == session.summary().total_tokens > 0


def test_a_run_that_asked_nothing_still_writes_a_report(openai_server: OpenAIServer, tmp_path: Path) -> None:
    session = make_session(openai_server)
    write_report(tmp_path / "empty.json", session)
    report = json.loads((tmp_path / "empty.json").read_text(encoding="utf-8"))
    assert (report["num_prompts"], report["completed"], report["duration"]) == (0, 0, 0.0)
    assert report["mean_ttft_ms"] is None and report["output_lens"] == []
    write_report(tmp_path / "empty.csv", session)
    assert (tmp_path / "empty.csv").read_text(encoding="utf-8").splitlines() == ["stream,question,state"]


async def test_progress_has_a_ttft_while_streams_stream_and_the_report_lists_finish_reasons_and_queue_times(
    openai_server: OpenAIServer,
) -> None:
    from tui.report import per_request_lists, progress_record, stream_figures

    openai_server.reset(Behaviour(tokens=300, tokens_per_s=100))
    session = make_session(openai_server, concurrency=1)
    runs = [session.new_run(q) for q in ("slow one", "waits its turn")]
    tasks = [asyncio.create_task(run.wait()) for run in runs]
    await until(lambda: runs[0].metrics.ttft is not None, what="the first token to arrive")
    midway = progress_record(session, 1.0)
    assert midway["completed"] == 0 and midway["mean_ttft_ms"] is not None
    runs[0].cancel()
    openai_server.reset(Behaviour(tokens=8, finish_reason="length"))
    await asyncio.gather(*tasks)
    lists = per_request_lists(stream_figures(session), None)
    assert lists["finish_reasons"] == [None, "length"]
    assert lists["queue_times"][0] == 0.0 and lists["queue_times"][1] > 0.01
