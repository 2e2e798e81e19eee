"""One stream through real dspy.streamify against a real loopback HTTP server."""

from __future__ import annotations

import asyncio

import pytest

from tests.streaming.conftest import collect
from tests.support.openai_server import Behaviour
from tui.streaming.events import Cancelled, Done, Failed, Retrying, StreamEvent, Token


def tokens(events: list, field: str = "answer") -> str:
    return "".join(e.text for e in events if isinstance(e, Token) and e.field == field)


async def test_a_question_streams_tokens_then_done(openai_server, make_run):
    openai_server.default = Behaviour(tokens=30)
    run = make_run()
    events = await collect(run)
    assert isinstance(events[-1], Done)
    assert sum(isinstance(e, Token) for e in events) >= 25
    # The listener holds back a few chunks to hide field markers; after its flush the
    # streamed text must equal the final Prediction's field.
    assert tokens(events) == events[-1].prediction.answer
    assert run.metrics.state == "done" and run.metrics.attempts == 1


async def test_chain_of_thought_streams_reasoning_then_answer(openai_server, make_run):
    run = make_run(program="cot")
    events = await collect(run)
    fields = [e.field for e in events if isinstance(e, Token)]
    assert fields[0] == "reasoning" and fields[-1] == "answer"
    assert fields.index("answer") > max(i for i, f in enumerate(fields) if f == "reasoning")
    prediction = events[-1].prediction
    assert tokens(events, "reasoning") == prediction.reasoning
    assert tokens(events, "answer") == prediction.answer


async def test_every_stream_ends_with_exactly_one_terminal_event(openai_server, make_run):
    openai_server.script(Behaviour(status=401))
    for run in (make_run(), make_run(max_retries=0)):
        events = await collect(run)
        terminal = [e for e in events if isinstance(e, Done | Failed | Cancelled)]
        assert len(terminal) == 1 and terminal[0] is events[-1]


@pytest.mark.parametrize(
    "fault",
    [
        Behaviour(status=429, retry_after=0.1),
        Behaviour(status=500),
        Behaviour(status=503),
        Behaviour(status=408),
        Behaviour(cut_after=5),
        Behaviour(stall_after=5),
    ],
    ids=["429", "500", "503", "408", "cut", "stall"],
)
async def test_transient_faults_are_retried_and_the_answer_completes(openai_server, make_run, fault):
    openai_server.script(fault)
    run = make_run(timeout=0.5)
    events = await collect(run)
    retries = [e for e in events if isinstance(e, Retrying)]
    assert len(retries) == 1 and retries[0].attempt == 1 and retries[0].max_attempts == 4
    assert isinstance(events[-1], Done)
    assert run.metrics.attempts == 2
    assert len(openai_server.completions) == 2
    # The text after the Retrying event is the whole answer: the retry started over.
    after = events[events.index(retries[0]) + 1 :]
    assert tokens(after) == events[-1].prediction.answer


async def test_a_retried_streams_partial_text_is_kept_in_its_record(openai_server, make_run):
    openai_server.script(Behaviour(cut_after=8))
    run = make_run()
    await collect(run)
    first, second = run.record.attempts
    assert first.text["answer"] and first.error.startswith("connection failed")
    assert second.text["answer"] == run.record.prediction.answer


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_never_retried(openai_server, make_run, status):
    openai_server.script(Behaviour(status=status))
    run = make_run()
    events = await collect(run)
    assert not any(isinstance(e, Retrying) for e in events)
    assert isinstance(events[-1], Failed)
    assert str(status) in events[-1].error
    assert "\n" not in events[-1].error
    assert len(openai_server.completions) == 1


async def test_retry_after_is_honoured(openai_server, make_run):
    openai_server.script(Behaviour(status=429, retry_after=1))
    run = make_run(retry_delay=0.01)
    events = await collect(run)
    retrying = next(e for e in events if isinstance(e, Retrying))
    assert retrying.delay >= 1.0
    first, second = openai_server.completions[:2]
    assert second.received_at - first.received_at >= 0.95


async def test_retry_after_is_capped(openai_server, make_run):
    openai_server.script(Behaviour(status=429, retry_after=120))
    run = make_run(max_retry_wait=0.2)
    events = await collect(run)
    assert next(e for e in events if isinstance(e, Retrying)).delay <= 0.2
    assert isinstance(events[-1], Done)


async def test_backoff_grows_exponentially(openai_server, make_run):
    openai_server.script(*[Behaviour(status=500)] * 3)
    run = make_run(retry_delay=0.05)
    delays = [e.delay for e in await collect(run) if isinstance(e, Retrying)]
    assert len(delays) == 3
    for k, delay in enumerate(delays):
        base = 0.05 * 2**k
        assert base <= delay <= base + 0.025 + 1e-9


async def test_retries_give_up_after_max_retries_with_one_line_error(openai_server, make_run):
    openai_server.script(*[Behaviour(status=503)] * 5)
    run = make_run(max_retries=2)
    events = await collect(run)
    assert [e.attempt for e in events if isinstance(e, Retrying)] == [1, 2]
    assert isinstance(events[-1], Failed) and events[-1].error.startswith("503")
    assert len(openai_server.completions) == 3


async def test_a_stalled_first_token_times_out(openai_server, make_run):
    openai_server.script(Behaviour(first_token_delay=30))
    run = make_run(timeout=0.3, max_retries=0)
    events = await asyncio.wait_for(collect(run), 5)
    assert isinstance(events[-1], Failed)
    assert events[-1].error == "stalled: no token for 0.3 s for the first token"


async def test_a_stall_mid_stream_fails_with_the_partial_answer(openai_server, make_run):
    openai_server.script(Behaviour(stall_after=10))
    run = make_run(timeout=0.3, max_retries=0)
    events = await asyncio.wait_for(collect(run), 5)
    assert isinstance(events[-1], Failed)
    assert "between tokens" in events[-1].error
    assert events[-1].partial_text and events[-1].partial_text == tokens(events)


async def test_a_malformed_chunk_fails_cleanly(openai_server, make_run):
    openai_server.script(Behaviour(malformed_after=5))
    run = make_run(max_retries=0)
    events = await collect(run)
    assert isinstance(events[-1], Failed) and "\n" not in events[-1].error


async def test_cancel_mid_stream_closes_the_request_and_keeps_the_partial_text(openai_server, make_run):
    openai_server.default = Behaviour(tokens=400, tokens_per_s=200)
    run = make_run()
    seen = []
    async for event in run.events():
        seen.append(event)
        if len(seen) == 10:
            run.cancel()
    assert isinstance(seen[-1], Cancelled)
    assert seen[-1].partial_text == tokens(seen)
    assert openai_server.wait_for(lambda: openai_server.disconnects == 1, timeout=2)
    assert len(openai_server.completions) == 1


async def test_cancel_while_the_producer_waits_on_a_full_queue(openai_server, make_run):
    openai_server.default = Behaviour(tokens=400)
    run = make_run(buffer_size=5)
    run.start()
    produced = await _producer_blocked(run, openai_server)
    assert run.queue.full() and run.metrics.tokens == produced  # the producer is waiting on the put
    run.cancel()
    ending = await asyncio.wait_for(run.wait(), 5)
    assert isinstance(ending, Cancelled)
    assert ending.partial_text  # what had streamed is kept
    assert len(openai_server.completions) == 1  # a cancel is never retried


async def _until(condition, timeout: float = 10.0, what: str = "a condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _producer_blocked(run, openai_server) -> int:
    """Wait until the queue is full and the producer is parked on its put; return its token count.

    The producer counts a token before it puts it, so one token may be counted after the queue
    fills: the count is read only once the server has sent well past it.
    """
    await _until(lambda: run.queue.full(), what="the queue to fill")
    ahead = run.metrics.tokens + 20

    def server_ahead() -> bool:
        request = openai_server.requests[0] if openai_server.requests else None
        return request is not None and (request.tokens_sent > ahead or request.finished_at is not None)

    await _until(server_ahead)
    return run.metrics.tokens


async def test_backpressure_holds_the_queue_at_buffer_size(openai_server, make_run):
    openai_server.default = Behaviour(tokens=500)
    run = make_run(buffer_size=8)
    run.start()
    produced = await _producer_blocked(run, openai_server)
    assert run.queue.qsize() == 8
    request = openai_server.requests[0]
    sent = request.tokens_sent
    await _until(lambda: request.tokens_sent > sent + 20 or request.finished_at is not None)
    assert run.metrics.tokens == produced  # the producer waits for the consumer
    assert run.metrics.state == "streaming"
    ending = await run.wait()
    assert isinstance(ending, Done)
    assert run.metrics.queue_fill_max == 8


async def test_a_consumer_that_leaves_early_cancels_the_stream(openai_server, make_run):
    openai_server.default = Behaviour(tokens=400, tokens_per_s=200)
    run = make_run()
    async for _ in run.events():
        break
    ending = await asyncio.wait_for(run.wait(), 5)
    assert isinstance(ending, Cancelled)


async def test_no_warning_or_stray_task_is_left_after_cancel(openai_server, make_run, recwarn):
    openai_server.default = Behaviour(tokens=400, tokens_per_s=300)
    loop = asyncio.get_running_loop()
    errors = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    runs = [make_run() for _ in range(4)]
    for run in runs:
        run.start()
    await _until(lambda: all(run.metrics.tokens > 0 for run in runs), what="every stream to stream")
    for run in runs:
        run.cancel()
    for run in runs:
        assert isinstance(await run.wait(), Cancelled)
    import gc

    gc.collect()
    stray = lambda: [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]  # noqa: E731
    await _until(lambda: stray() == [], timeout=2, what="every task to end")
    assert errors == []


async def test_a_cache_hit_is_delivered_whole_and_reported(openai_server):
    import dspy

    from tests.streaming.conftest import server_settings
    from tui.streaming.runner import StreamJob, StreamRun

    openai_server.default = Behaviour(text="cached answer text")
    settings = server_settings(openai_server, cache=True)
    lm = dspy.LM(
        "openai/test-model", api_base=openai_server.base_url, api_key="sk-x", cache=True, num_retries=0
    )
    question = f"cache probe {id(settings)}"
    first = StreamRun(StreamJob(question), settings, lm, dspy.ChatAdapter())
    assert not (await first.wait()).cache_hit
    second = StreamRun(StreamJob(question), settings, lm, dspy.ChatAdapter())
    events = await collect(second)
    assert isinstance(events[-1], Done) and events[-1].cache_hit
    assert second.metrics.cache_hit
    assert tokens(events) == "cached answer text"
    assert len(openai_server.completions) == 1


async def test_injected_faults_cut_each_attempt_after_the_planned_tokens_and_are_retried(openai_server):
    import random

    import dspy

    from tests.streaming.conftest import server_lm, server_settings
    from tui.streaming.runner import StreamJob, StreamRun

    openai_server.default = Behaviour(tokens=200, token_delay=0.002)
    settings = server_settings(openai_server, max_retries=2, retry_delay=0.01)
    plan = random.Random(7)
    expected = [(plan.random(), plan.randint(3, 20)) for _ in range(3)]  # every attempt faults (rate 1)
    run = StreamRun(
        StreamJob("q"), settings, server_lm(openai_server), dspy.ChatAdapter(),
        fault_rate=1.0, rng=random.Random(7),
    )  # fmt: skip
    seen = [event async for event in run.events()]
    retries = [e for e in seen if isinstance(e, Retrying)]
    assert [r.injected for r in retries] == [True, True]
    assert isinstance(seen[-1], Failed) and "injected fault" in seen[-1].error
    assert [f"after {after} tokens" in r.error for r, (_, after) in zip(retries, expected, strict=False)] == [
        True,
        True,
    ]
    assert len(run.record.attempts) == 3 and all(a.text for a in run.record.attempts)
    assert len(openai_server.requests) == 3
    assert openai_server.wait_for(lambda: all(r.disconnected for r in openai_server.requests), timeout=5)


async def test_a_fed_stream_hands_its_events_to_the_sink_in_order_and_waits_with_it(openai_server, make_run):
    """`feed` (a worker's path): events go straight to the sink, no queue between; a sink that
    waits holds the producer, and the terminal event is the run's, never the sink's."""
    openai_server.default = Behaviour(tokens=300)
    taken: list[StreamEvent] = []
    gate = asyncio.Event()

    async def sink(event: StreamEvent) -> None:
        if len(taken) == 5:
            await gate.wait()
        taken.append(event)

    run = make_run()
    task = run.feed(sink)
    await _until(lambda: len(taken) == 5, what="five events")
    request = openai_server.requests[0]
    ahead = run.metrics.tokens + 20
    await _until(lambda: request.tokens_sent > ahead or request.finished_at is not None)
    assert len(taken) == 5 and run.metrics.tokens <= ahead - 19  # held while the sink waits
    assert run.queue.empty()
    gate.set()
    await task
    assert isinstance(run.terminal, Done)
    assert not any(isinstance(event, Done) for event in taken)
    assert tokens(taken) == run.terminal.prediction.answer
