"""Streams in worker processes: real processes, real pipes, real HTTP to the loopback server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.conditions import until
from tests.support.openai_server import Behaviour, OpenAIServer
from tui.config import Settings
from tui.engine.remote import RemoteSession
from tui.streaming.events import Cancelled, Done, Failed, Token

ROOT = Path(__file__).resolve().parents[1]


def settings_for(server: OpenAIServer, **changes: object) -> Settings:
    base = Settings(
        model="openai/test-model", api_base=server.base_url, retry_delay=0.0, timeout=20.0, max_retries=0
    )
    return base.replace(**changes)


@pytest.fixture
def session_on(openai_server: OpenAIServer):
    sessions: list[RemoteSession] = []

    def make(**changes: object) -> RemoteSession:
        workers = int(changes.pop("workers", 2))  # type: ignore[call-overload]
        session = RemoteSession(settings_for(openai_server, **changes), workers=workers)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def both_workers_ready(session: RemoteSession) -> None:
    pool = session.pool
    while len(pool.workers) < 2:
        pool.spawn()
    await until(lambda: all(w.ready for w in pool.workers), timeout=60, what="two ready workers")


async def test_a_batch_expected_up_front_spreads_over_every_worker_and_one_question_uses_one(
    session_on, openai_server
):
    openai_server.reset(Behaviour(tokens=40))
    single = session_on(concurrency=8)
    single.expect(1)
    assert (await single.new_run("alone").wait()).__class__ is Done
    assert len(single.pool.workers) == 1, "one question never starts a second worker"

    batch = session_on(concurrency=8)
    batch.expect(8)
    assert len(batch.pool.workers) == 2, "both workers load together"
    runs = [batch.new_run(f"question {i}") for i in range(8)]
    ends = await asyncio.wait_for(asyncio.gather(*(run.wait() for run in runs)), timeout=60)
    assert all(isinstance(end, Done) for end in ends)
    served = [sum(run.worker is worker for run in runs) for worker in batch.pool.workers]
    assert max(served) - min(served) <= 1, f"streams per worker: {served}"


async def test_two_questions_at_once_run_one_in_each_worker(session_on, openai_server):
    openai_server.reset(Behaviour(tokens=40))
    pair = session_on(concurrency=8)
    pair.expect(2)
    runs = [pair.new_run(f"question {i}") for i in range(2)]
    ends = await asyncio.wait_for(asyncio.gather(*(run.wait() for run in runs)), timeout=60)
    assert all(isinstance(end, Done) for end in ends)
    assert {id(run.worker) for run in runs} == {id(worker) for worker in pair.pool.workers}
    assert len(pair.pool.workers) == 2, "killing one worker would fail one question, not both"


async def test_a_killed_worker_fails_only_its_own_streams_and_keeps_their_text(session_on, openai_server):
    openai_server.reset(Behaviour(tokens=300, tokens_per_s=40))
    session = session_on(concurrency=4)
    session.ensure_program()
    await both_workers_ready(session)
    runs = [session.new_run(f"question {i}") for i in range(4)]
    consumers = [asyncio.create_task(run.wait()) for run in runs]
    await until(lambda: all(r.metrics.tokens >= 5 for r in runs), timeout=30, what="every stream streaming")
    by_worker = {id(w): [r for r in runs if r.worker is w] for w in session.pool.workers}
    assert all(len(group) == 2 for group in by_worker.values()), "streams go to the least-loaded worker"
    victim = session.pool.workers[0]
    doomed = by_worker[id(victim)]
    os.kill(victim.pid, signal.SIGKILL)
    ends = await asyncio.wait_for(asyncio.gather(*consumers), timeout=60)
    for run, end in zip(runs, ends, strict=True):
        if run in doomed:
            assert isinstance(end, Failed)
            assert end.error == "worker process died (signal 9)"
            assert end.partial_text and run.record.text.startswith(end.partial_text[:20])
        else:
            assert isinstance(end, Done), end
            assert run.metrics.tokens > 250
    # a new worker takes later streams
    later = session.new_run("after the crash")
    assert isinstance(await asyncio.wait_for(later.wait(), timeout=60), Done)
    assert later.worker is not victim


async def test_events_arrive_in_order_and_the_view_matches_server_and_report(session_on, openai_server):
    openai_server.reset(Behaviour(tokens=500, raw=True))
    session = session_on(concurrency=8, adapter="plain")
    runs = [session.new_run(f"q{i}") for i in range(8)]

    async def collect(run) -> str:
        return "".join([e.text async for e in run.events() if isinstance(e, Token)])

    texts = await asyncio.wait_for(asyncio.gather(*(collect(r) for r in runs)), timeout=120)
    sent = sorted(r.text_sent.strip() for r in openai_server.completions)
    assert sorted(t.strip() for t in texts) == sent, "every token, in order, per stream"
    from tui.report import build_report

    report = build_report(session)
    for run, text in zip(runs, texts, strict=True):
        assert run.record.text == text
        assert run.record.prediction["answer"].strip() == text.strip()
    assert report["output_lens"] == [r.metrics.tokens for r in runs]
    assert report["generated_texts"] == [r.record.text for r in runs]
    assert all(r.metrics.ttft is not None and r.metrics.ttft < 5 for r in runs)


async def test_a_stream_nobody_reads_is_held_to_its_buffer_and_slows_no_other(session_on, openai_server):
    openai_server.reset(Behaviour(tokens=2000))
    session = session_on(concurrency=2, buffer_size=20, workers=1)
    unread, read = session.new_run("never drawn"), session.new_run("drawn")
    unread.start()
    end = await asyncio.wait_for(read.wait(), timeout=120)
    assert isinstance(end, Done) and read.metrics.tokens >= 2000
    assert unread.terminal is None, "held back by credit, not finished"
    assert unread.queue.qsize() <= 20, "the front holds no more than the credit it granted"
    taken = 0
    async for event in unread.events():
        taken += isinstance(event, Token)
    assert isinstance(unread.terminal, Done) and taken >= 2000


async def test_cancel_reaches_the_worker_and_keeps_the_partial_text(session_on, openai_server):
    openai_server.reset(Behaviour(tokens=400, tokens_per_s=40))
    session = session_on(concurrency=2)
    run = session.new_run("long one")
    consumer = asyncio.create_task(run.wait())
    await until(lambda: run.metrics.tokens >= 5, timeout=30, what="tokens")
    run.cancel()
    end = await asyncio.wait_for(consumer, timeout=20)
    assert isinstance(end, Cancelled) and end.partial_text
    assert openai_server.wait_for(lambda: openai_server.disconnects >= 1, timeout=10), (
        "the HTTP request closed"
    )


def test_a_bad_model_is_refused_by_the_worker_as_one_line(openai_server):
    settings = settings_for(openai_server, model="nosuchprovider/x", api_base=None)
    session = RemoteSession(settings, workers=1)
    try:
        with pytest.raises(Exception) as caught:
            session.ensure_model()
        assert "\n" not in str(caught.value) and "nosuchprovider" in str(caught.value)
    finally:
        session.close()
    assert not alive(session.pool.workers[0].pid)


FRONT = """
import asyncio, sys
from tui.config import Settings
from tui.engine.remote import RemoteSession

async def main():
    session = RemoteSession(Settings(model="openai/test-model", api_base=sys.argv[1]), workers=2)
    run = session.new_run("hello")
    await run.wait()
    print(sorted(m for m in sys.modules if m.split(".")[0] in ("dspy", "litellm")), run.record.text[:5])
    session.close()

asyncio.run(main())
"""


def test_the_front_never_imports_dspy(openai_server):
    result = subprocess.run(
        [sys.executable, "-c", FRONT, openai_server.base_url],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    modules, _, text = result.stdout.partition("]")
    assert modules == "[" and text.strip(), result.stdout


def worker_pids(front: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{front}/task").iterdir():
        children += [int(pid) for pid in (task / "children").read_text().split()]
    return children


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_no_worker_outlives_the_front(tmp_path, openai_server, how):
    openai_server.reset(Behaviour(tokens=2000, tokens_per_s=50))
    questions = tmp_path / "q.txt"
    questions.write_text("".join(f"question {i}\n" for i in range(6)))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    front = subprocess.Popen(
        [sys.executable, "-m", "tui", "--headless", "--model", "openai/test-model",
         "--api-base", openai_server.base_url, "--questions", str(questions), "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        assert openai_server.wait_for(
            lambda: sum(r.tokens_sent > 5 for r in openai_server.requests) >= 6, timeout=60
        ), "six streams streaming"
        workers = worker_pids(front.pid)
        assert len(workers) == 2, workers
        front.send_signal(getattr(signal, how))
        front.wait(timeout=20)
        gone_by = time.monotonic() + 2.0
        while any(alive(pid) for pid in workers) and time.monotonic() < gone_by:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers), "a worker outlived the front by more than 2 s"
        if how == "SIGINT":
            assert front.returncode == 130 and "Traceback" not in front.stderr.read()
    finally:
        front.kill()


def test_workers_zero_runs_in_process_and_gives_the_same_report(tmp_path, openai_server):
    openai_server.reset(Behaviour(tokens=50))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    reports = []
    for workers in ("0", "2"):
        report = tmp_path / f"r{workers}.json"
        result = subprocess.run(
            [sys.executable, "-m", "tui", "--headless", "--model", "openai/test-model",
             "--api-base", openai_server.base_url, "--workers", workers, "--report", str(report), "a", "b"],
            capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        reports.append(json.loads(report.read_text()))
    for key in ("completed", "output_lens", "generated_texts", "total_output_tokens"):
        assert reports[0][key] == reports[1][key], key
