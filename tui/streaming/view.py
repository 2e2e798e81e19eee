"""The one reducer: what is known about a stream, learned only from its events.

`StreamView.apply(event, at)` keeps a stream's state, its text per field across attempts, the
tool calls of the current attempt, the retry countdown and the terminal event. A stream run in
a worker process is known to the front only through it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

from tui.streaming.events import (
    Cancelled,
    Done,
    Failed,
    Retrying,
    Status,
    StreamEvent,
    TerminalEvent,
    Token,
    is_terminal,
)
from tui.streaming.metrics import StreamMetrics
from tui.streaming.record import AttemptRecord, StreamJob, StreamRecord
from tui.streaming.session_base import tell_observers


class StreamState(StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    LOADING = "loading model"
    STREAMING = "streaming"
    RETRYING = "retrying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


END_STATES = {Done: StreamState.DONE, Failed: StreamState.FAILED, Cancelled: StreamState.CANCELLED}


class StreamView:
    def __init__(self, job: StreamJob, metrics: StreamMetrics | None = None) -> None:
        self.job = job
        self.record = StreamRecord(job.question)
        self.metrics = metrics or StreamMetrics()
        self.state = StreamState.QUEUED
        self.tool_calls: list[str] = []
        self.terminal: TerminalEvent | None = None
        self.retry: Retrying | None = None
        self.retry_until: float | None = None  # when the next attempt starts, while retrying
        self._attempt: AttemptRecord | None = None

    def apply(self, event: StreamEvent, at: float | None = None) -> None:
        at = time.monotonic() if at is None else at
        match event:
            case Token(field=name, text=text):
                texts = self._open().text
                texts[name] = texts.get(name, "") + text
                self.state = StreamState.STREAMING
                self.retry = self.retry_until = None
                self.metrics._recent.append(at)
            case Status(message=message, kind=kind):
                if kind == "tool" and message.startswith("→"):
                    self.tool_calls.append(message[2:])
                elif kind == "state":
                    self.state = _state_of(message)
                    if self.state is StreamState.STREAMING:
                        self._open()
            case Retrying():
                attempt = self._open()
                attempt.error = event.error
                self._attempt = None
                self.tool_calls.clear()
                self.state = StreamState.RETRYING
                self.retry, self.retry_until = event, at + event.delay
            case Done(prediction=prediction):
                self._end(event)
                self.record.prediction = prediction
            case Failed(error=error):
                self._end(event)
                attempt = self._open()
                attempt.error = attempt.error or error
                self.record.error = error
            case Cancelled():
                self._end(event)
                if self._attempt is not None and not self._attempt.error:
                    self._attempt.error = "cancelled"

    def _open(self) -> AttemptRecord:
        """The attempt now streaming; the first event of an attempt opens it."""
        if self._attempt is None:
            self._attempt = AttemptRecord(len(self.record.attempts) + 1, {})
            self.record.attempts.append(self._attempt)
        return self._attempt

    def _end(self, event: TerminalEvent) -> None:
        self.terminal = event
        self.state = END_STATES[type(event)]
        self.retry = self.retry_until = None

    def retry_left(self, now: float | None = None) -> float | None:
        """Seconds until the next attempt, while the stream waits to retry."""
        if self.retry_until is None:
            return None
        return max(0.0, self.retry_until - (time.monotonic() if now is None else now))


def _state_of(message: str) -> StreamState:
    try:
        return StreamState(message)
    except ValueError:
        return StreamState.STARTING


class ViewedStream:
    """A stream known only through the events it is fed (from a worker, from a trace): its
    figures, record and end are its `StreamView`'s, and its consumer reads them from its queue.

    Subclasses feed it (`_deliver`) and say how it starts and is cancelled; `_taken` is told of
    each event its consumer takes (a worker's stream grants credit back).
    """

    def __init__(self, job: StreamJob, settings: Any, info: Any, metrics: StreamMetrics) -> None:
        self.job = job
        self.settings = settings
        self.info = info
        self.view = StreamView(job, metrics)
        self.view.metrics.final_field = info.final_output.key
        self.queue: asyncio.Queue[StreamEvent] = asyncio.Queue()
        self.observers: list[Any] = []
        self.forced_faults = 0

    @property
    def metrics(self) -> StreamMetrics:
        return self.view.metrics

    @property
    def record(self) -> StreamRecord:
        return self.view.record

    @property
    def terminal(self) -> TerminalEvent | None:
        return self.view.terminal

    @property
    def tool_calls(self) -> list[str]:
        return self.view.tool_calls

    def start(self) -> Any:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError

    def _taken(self, event: StreamEvent) -> None:
        """The consumer has taken `event`."""

    def _deliver(self, event: StreamEvent, at: float | None = None) -> None:
        self.view.apply(event, at)
        self.queue.put_nowait(event)

    async def events(self) -> AsyncIterator[StreamEvent]:
        self.start()
        try:
            while True:
                event = self.queue.get_nowait() if self.queue.qsize() else await self.queue.get()
                self._taken(event)
                tell_observers(self.observers, self, event)
                yield event
                if is_terminal(event):
                    return
        finally:
            if self.terminal is None:
                self.cancel()

    async def wait(self) -> TerminalEvent:
        async for event in self.events():
            last = event
        return last  # type: ignore[return-value]
