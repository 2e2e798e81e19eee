"""Run one question: dspy.streamify -> bounded queue of StreamEvents, with retries, timeouts, cancel.

Each stream is consumed by one task of its own from start to end (`StreamRun.start`):
DSPy's streamify generator lives inside an anyio task group, which must be entered,
left and cancelled by the same task. Waits are bounded with `asyncio.timeout()` in
that task, and a cancel is a cancel of that task.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractContextManager, nullcontext, suppress
from typing import Any

import dspy
from dspy.streaming import StatusMessage, StreamListener, StreamResponse
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from tui.config import Settings
from tui.programs.info import field_keys
from tui.streaming import program_output
from tui.streaming.events import (
    Cancelled,
    Done,
    Failed,
    Retrying,
    Status,
    StreamEvent,
    TerminalEvent,
    Token,
)
from tui.streaming.faults import InjectedFault, ProgramMisbehaved, StreamIncomplete, StreamStalled, classify
from tui.streaming.metrics import StreamMetrics
from tui.streaming.program_info import ProgramInfo
from tui.streaming.program_status import ProgramStatusProvider, status_kind
from tui.streaming.record import AttemptRecord, StreamJob, StreamRecord
from tui.streaming.session_base import EventObserver, tell_observers

log = logging.getLogger(__name__)
_WAKE = object()
ListenerFactory = Callable[[dspy.Module, Any], list[StreamListener]]
# Reports an engine's own states ("loading model", "queued") while a stream is consumed.
StatusUpdates = Callable[[Callable[[Status], None]], AbstractContextManager[None]]


def default_listeners(program: dspy.Module, adapter: Any) -> list[StreamListener]:
    """A fresh listener per streamable output field: a reused listener streams only once (dspy#8425)."""
    from tui.models.lm_factory import make_stream_listeners

    return make_stream_listeners(program, adapter)


def runs_async(program: dspy.Module) -> bool:
    """Whether `program` has its own `aforward` (Predict, ChainOfThought, ReAct, the user's async
    modules); others (a sync `forward`, Refine-like wrappers) run in a worker thread."""
    return callable(getattr(type(program), "aforward", None))


class _ReturnsPrediction(dspy.Module):
    """Runs the user's program and hands streamify a Prediction, whatever `forward` returned.

    streamify ends a stream only on a Prediction; a program returning a dict or a string would
    otherwise stream its fields and then hang until the stall timeout.
    """

    def __init__(self, program: dspy.Module) -> None:
        super().__init__()
        self.program = program

    async def aforward(self, **inputs: Any) -> dspy.Prediction:
        try:
            if runs_async(self.program):
                result = await self.program.acall(**inputs)
            else:
                result = await dspy.asyncify(self._call_in_thread)(**inputs)
        except (SystemExit, KeyboardInterrupt) as exc:
            raise ProgramMisbehaved.exited(exc) from None
        if result is None:
            raise ProgramMisbehaved("the program returned None, not a Prediction")
        if isinstance(result, dspy.Prediction):
            return result
        if isinstance(result, Mapping):
            return dspy.Prediction(**{str(k): v for k, v in result.items()})
        return dspy.Prediction(answer=result)

    def _call_in_thread(self, **inputs: Any) -> Any:
        try:
            return self.program(**inputs)
        except (SystemExit, KeyboardInterrupt, GeneratorExit) as exc:
            # Raised out of the thread, these would end the event loop, not this stream.
            raise ProgramMisbehaved.exited(exc) from None


_PROGRAMS: dict[tuple[Any, ...], Any] = {}


def program_for(settings: Settings) -> Any:
    """The `LoadedProgram` that `settings` name, loaded once per process."""
    from tui.programs import load_program

    key = (
        settings.program, settings.signature, settings.instructions,
        settings.load, settings.allow_pickle, settings.tools,
    )  # fmt: skip
    if key not in _PROGRAMS:
        _PROGRAMS[key] = load_program(settings)
    return _PROGRAMS[key]


class StreamRun:
    """One question's stream: a producer task feeding a bounded queue, consumed with `events()`.

    The producer waits when the queue holds `buffer_size` events (backpressure). The
    terminal event travels outside the bound, so a full queue never blocks the ending.
    """

    def __init__(
        self,
        job: StreamJob,
        settings: Settings,
        lm: Any,
        adapter: Any,
        *,
        metrics: StreamMetrics | None = None,
        fault_rate: float = 0.0,
        rng: random.Random | None = None,
        limiter: asyncio.Semaphore | None = None,
        listener_factory: ListenerFactory | None = None,
        status_updates: StatusUpdates | None = None,
        program: Any = None,
    ) -> None:
        self.job = job
        self.settings = settings
        self.lm = lm
        self.adapter = adapter
        self.metrics = metrics or StreamMetrics()
        self.record = StreamRecord(job.question)
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=settings.buffer_size)
        self.terminal: TerminalEvent | None = None
        self.fault_rate = fault_rate
        self._rng = rng or random.Random()
        self._limiter = limiter
        self._listener_factory = listener_factory or default_listeners
        self._status_updates = status_updates
        # retry_delay, doubled each retry, plus up to half retry_delay of jitter.
        self._backoff = wait_exponential_jitter(
            multiplier=settings.retry_delay, max=settings.max_retry_wait, jitter=settings.retry_delay / 2
        )
        self._task: asyncio.Task[None] | None = None
        self._printed: program_output.PrintedLines | None = None
        self.forced_faults = 0  # attempts that fail on purpose whatever the fault rate (recovery, demo)
        # A `tui.programs.LoadedProgram`: a fresh copy of it runs each attempt.
        self.program = program if program is not None else program_for(settings)
        self.info: ProgramInfo = self.program.info
        self.metrics.final_field = self.info.final_output.key
        self.tool_calls: list[str] = []
        self._keys: dict[tuple[str, str], str] = {}
        self._ended: set[str] = set()
        self._lm_chunks = 0  # raw chunks from the LM in this attempt: none means DSPy's cache answered
        self.observers: list[EventObserver] = []
        self._sink: Callable[[StreamEvent], Awaitable[None]] | None = None

    # -- consumer side -------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._printed = program_output.PrintedLines(loop, self._put)
            context = contextvars.copy_context()
            context.run(program_output.printing_stream.set, self)  # what the program prints is ours
            program_output.running(self)
            self._task = loop.create_task(
                self._produce(), name=f"stream-{self.job.stream_id}", context=context
            )
        return self._task

    def printed(self, line: str) -> None:
        """A line the program printed while running this stream, from whichever thread ran it:
        a timeline event, after the events already made."""
        if self.terminal is None and self._printed is not None:
            self._printed.add(line)

    def feed(self, sink: Callable[[StreamEvent], Awaitable[None]]) -> asyncio.Task[None]:
        """Start, handing each event but the last to `sink` as it is made, in place of the queue
        and `events()`: the producer waits while `sink` does, so `sink` bounds the stream (a
        worker's credit). The terminal event is `terminal` once the returned task is done."""
        self._sink = sink
        return self.start()

    def cancel(self) -> None:
        """Stop the producer promptly; the stream then ends with `Cancelled(partial_text)`."""
        if self._task is None:
            self._end(Cancelled(""))
        elif not self._task.done():
            self._task.cancel()

    async def events(self) -> AsyncIterator[StreamEvent]:
        """Every event of the stream in order, ending with its one terminal event."""
        self.start()
        try:
            while True:
                if self.terminal is not None and self.queue.empty():
                    tell_observers(self.observers, self, self.terminal)
                    yield self.terminal
                    return
                event = self.queue.get_nowait() if self.queue.qsize() else await self.queue.get()
                if event is _WAKE:
                    continue
                tell_observers(self.observers, self, event)
                yield event
        finally:
            if self.terminal is None:
                self.cancel()

    async def wait(self) -> TerminalEvent:
        """Drain the stream without looking at it; return how it ended."""
        async for event in self.events():
            last = event
        return last  # type: ignore[return-value]

    # -- producer side -------------------------------------------------------------

    def _end(self, event: TerminalEvent) -> None:
        if self.terminal is not None:
            return
        self.terminal = event
        program_output.ended(self)
        if self._printed is not None:
            self._printed.close()
        state = {Done: "done", Failed: "failed", Cancelled: "cancelled"}[type(event)]
        self.metrics.finish(state, getattr(event, "error", ""))
        if isinstance(event, Done):
            self.metrics.cache_hit = event.cache_hit
        if self._sink is not None:
            tell_observers(self.observers, self, event)
        elif not self.queue.full():
            self.queue.put_nowait(_WAKE)

    async def _put(self, event: StreamEvent) -> None:
        if self._sink is not None:
            tell_observers(self.observers, self, event)
            await self._sink(event)
            return
        queue = self.queue
        if queue.full():
            await queue.put(event)
        else:
            queue.put_nowait(event)
        self.metrics.record_queue_fill(queue.qsize())

    async def _produce(self) -> None:
        try:
            if self._limiter is not None:
                if self._limiter.locked():
                    self.metrics.begin_wait()
                    await self._put(Status("queued"))
                async with self._limiter:
                    self.metrics.end_wait()
                    self.metrics.start()
                    prediction, cache_hit = await self._with_retries()
            else:
                self.metrics.start()
                prediction, cache_hit = await self._with_retries()
        except asyncio.CancelledError:
            if self.record.attempts and not self.record.attempts[-1].error:
                self.record.attempts[-1].error = "cancelled"
            self._end(Cancelled(self.record.text))
        except Exception as exc:
            info = classify(exc)
            self.record.error = info.message
            if self.record.attempts:
                self.record.attempts[-1].error = info.message
            await self._flush_printed()
            self._end(Failed(info.message, self.record.text))
        else:
            self.record.prediction = prediction
            await self._flush_printed()
            self._end(Done(prediction, cache_hit))

    async def _flush_printed(self) -> None:
        """What the program printed last comes before the stream's end. The outcome is known by
        now, so a cancel that comes meanwhile only cuts the printed lines short."""
        if self._printed is not None:
            with suppress(asyncio.CancelledError):
                await self._printed.flush()

    async def _with_retries(self) -> tuple[Any, bool]:
        settings = self.settings
        retrying = AsyncRetrying(
            stop=stop_after_attempt(settings.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: classify(exc).retryable),
            before_sleep=self._announce_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt()
        raise AssertionError("unreachable: tenacity reraises the last failure")

    def _wait(self, state: RetryCallState) -> float:
        backoff = self._backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = classify(exc).retry_after if exc else None
        if retry_after is not None:
            backoff = max(backoff, retry_after)
        return min(backoff, self.settings.max_retry_wait)

    async def _announce_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        message = classify(exc).message if exc else "failed"
        if self.record.attempts:
            self.record.attempts[-1].error = message
        self.metrics.state = "retrying"
        await self._put(
            Retrying(
                attempt=state.attempt_number,
                max_attempts=self.settings.max_retries + 1,
                delay=state.upcoming_sleep,
                error=message,
                injected=isinstance(exc, InjectedFault),
            )
        )

    async def _attempt(self) -> tuple[Any, bool]:
        program = self.program.build()
        keys = field_keys(program)
        listeners = [
            self._timing_first_lm_chunk(listener)
            for listener in self._listener_factory(program, self.adapter)
        ]
        self.tool_calls.clear()
        self._keys, self._ended = keys, set()
        self._lm_chunks = 0
        streaming_program = dspy.streamify(
            _ReturnsPrediction(program),
            status_message_provider=ProgramStatusProvider(program),
            stream_listeners=listeners,
            is_async_program=True,
        )
        self.metrics.start_attempt()
        texts: dict[str, str] = {}
        self.record.attempts.append(AttemptRecord(len(self.record.attempts) + 1, texts))
        fault_after = self._planned_fault()
        prediction = None
        timeout = self.settings.timeout
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        # streamify's generator must not be left while suspended at a yield: its inner
        # generator would then be closed by the garbage collector in another task, and
        # anyio fails ("exit cancel scope in a different task"). So an interruption that
        # arrives while we handle an item is turned into a cancel of this task, delivered
        # inside the generator's next step, where it unwinds its own task group.
        interrupt: BaseException | None = None
        watch = _StallWatch(loop, task, timeout)
        engine_states = self._status_updates(self._note_status) if self._status_updates else nullcontext()
        with dspy.context(lm=self.lm, adapter=self.adapter, track_usage=True), engine_states:
            stream = streaming_program(**self.job.program_inputs)
            try:
                try:
                    async for value in stream:
                        if interrupt is not None:
                            continue
                        watch.paused = True  # waiting on a slow consumer is not a stall
                        try:
                            if isinstance(value, dspy.Prediction):
                                prediction = value
                            else:
                                await self._take(value, texts, fault_after)
                        except (asyncio.CancelledError, InjectedFault) as exc:
                            # A stall noticed just as an item arrived lands here too.
                            interrupt = StreamStalled(timeout, True) if watch.expired else exc
                            task.cancel()
                            continue
                        watch.last = loop.time()
                        watch.paused = False
                    if interrupt is not None:
                        await asyncio.sleep(0)  # the generator ended first: take the pending cancel here
                finally:
                    watch.close()
            except BaseException:
                # DSPy may report a cancel delivered inside it as an LM error: what we
                # asked for decides what this attempt raises, not what DSPy made of it.
                if watch.expired:
                    task.uncancel()
                if isinstance(interrupt, InjectedFault | StreamStalled):
                    task.uncancel()
                if task.cancelling():
                    raise asyncio.CancelledError() from None
                if interrupt is not None:
                    raise interrupt from None
                if watch.expired:
                    raise StreamStalled(timeout, self.metrics.tokens > 0) from None
                raise

        if prediction is None:
            raise StreamIncomplete("the program ended without a prediction")
        # Only DSPy's cache answers without a chunk from the LM; with the cache off nothing is a hit.
        cache_hit = self.settings.cache and not texts and self._lm_chunks == 0
        if not texts:
            # A cached answer does not stream, nor does a predictor made inside `forward` (no
            # listener can know it in advance): deliver the text fields whole.
            for name, key in self._prediction_keys(prediction).items():
                text = str(prediction.get(name, "") or "")
                texts[key] = text
                if text:
                    self.metrics.record_token(key)
                    await self._put(Token(key, text))
        streamed_fields = [output for output in self.info.outputs if output.streams]
        if streamed_fields and not any(text.strip() for text in texts.values()):
            # A server whose chunks carry no `choices`, or an empty reply: not an answer.
            raise StreamIncomplete("empty answer: the server sent no text")
        for name, key in self._prediction_keys(prediction).items():
            if key not in texts:
                continue
            final = str(prediction.get(name, "") or "")
            if texts[key].strip() != final.strip():
                # DSPy's listener cuts a field at "[[": the saved answer is the Prediction's.
                log.warning("stream %s: streamed %s differs from the prediction", self.job.stream_id, key)
        from tui.models.usage import prediction_usage

        usage = prediction_usage(prediction)
        self.metrics.record_usage(usage.input_tokens, usage.output_tokens, usage.cost_usd)
        return prediction, cache_hit

    def _prediction_keys(self, prediction: Any) -> dict[str, str]:
        """The Prediction's text fields and the keys they stream under: the last stage that
        outputs a field of that name is the one whose value the Prediction holds."""
        keys: dict[str, str] = {}
        names = set(prediction.keys()) if hasattr(prediction, "keys") else set()
        if not self.info.outputs:
            return {name: name for name in names if isinstance(prediction.get(name), str)}
        for output in self.info.outputs:
            if output.name in names and output.streams:
                keys[output.name] = output.key
        return keys

    def _note_status(self, status: Status) -> None:
        """A state change from the engine; dropped when the queue is full, the next one replaces it."""
        if status.message != "streaming":
            self.metrics.state = status.message
        if status.message == "queued":
            self.metrics.begin_wait(status.ahead)
        else:
            self.metrics.end_wait()
        if not self.queue.full():
            self.queue.put_nowait(status)

    async def _take(self, value: Any, texts: dict[str, str], fault_after: int | None) -> None:
        """Turn one item of DSPy's stream into events."""
        if isinstance(value, StreamResponse):
            if not value.chunk:
                if value.is_last_chunk:
                    self._ended.add(self._key(value))
                return
            name = self._key(value)
            chunk = value.chunk
            if name in self._ended:
                # The same predictor again (a ReAct step, a loop): a new paragraph of the field.
                self._ended.discard(name)
                if texts.get(name):
                    chunk = "\n\n" + chunk.lstrip()
            if value.is_last_chunk:
                self._ended.add(name)
            texts[name] = texts.get(name, "") + chunk
            self.metrics.record_token(name)
            await self._put(Token(name, chunk))
            if fault_after is not None and self.metrics.tokens >= fault_after:
                raise InjectedFault(fault_after)
        elif isinstance(value, StatusMessage):
            kind = status_kind(value.message)
            if kind == "tool" and str(value.message).startswith("→"):
                self.tool_calls.append(str(value.message)[2:])
            await self._put(Status(str(value.message), kind))

    def _key(self, value: StreamResponse) -> str:
        return self._keys.get((value.predict_name, value.signature_field_name), value.signature_field_name)

    def _timing_first_lm_chunk(self, listener: StreamListener) -> StreamListener:
        """Listeners see every raw LM chunk first; note when the first one came."""
        receive = listener.receive
        metrics = self.metrics
        run = self

        def timed_receive(chunk: Any) -> Any:
            # An adapter's own chunks (the plain adapter's field markers) carry no id or model.
            if getattr(chunk, "id", None) is not None or getattr(chunk, "model", None) is not None:
                metrics.record_lm_chunk()
                run._lm_chunks += 1
            for choice in getattr(chunk, "choices", None) or ():
                reason = getattr(choice, "finish_reason", None)
                if reason:
                    metrics.finish_reason = str(reason)  # "length": cut by the token limit
            return receive(chunk)

        listener.receive = timed_receive  # type: ignore[method-assign]
        return listener

    def _planned_fault(self) -> int | None:
        """In recovery mode, some attempts fail on purpose after a few tokens; `forced_faults` surely."""
        if self.forced_faults > 0:
            self.forced_faults -= 1
            return 2  # early: even a short answer reaches it
        if self.fault_rate <= 0 or self._rng.random() >= self.fault_rate:
            return None
        return self._rng.randint(3, 20)


class _StallWatch:
    """Cancels `task` once `timeout` seconds pass with no token, not counting waits on the consumer.

    One timer per attempt, re-armed only when it fires: moving an `asyncio.timeout` deadline twice
    per token costs a timer-heap insert and a cancelled handle each time (~5% of throughput).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], timeout: float) -> None:
        self.loop, self.task, self.timeout = loop, task, timeout
        self.last = loop.time()
        self.paused = False
        self.expired = False
        self.handle = loop.call_at(self.last + timeout, self._check)

    def _check(self) -> None:
        now = self.loop.time()
        due = (now if self.paused else self.last) + self.timeout
        if not self.paused and now >= due:
            self.expired = True
            self.task.cancel()
        else:
            self.handle = self.loop.call_at(due, self._check)

    def close(self) -> None:
        self.handle.cancel()
