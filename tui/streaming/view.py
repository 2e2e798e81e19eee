"""The one reducer: what is known about a stream, learned only from its events.

`StreamView.apply(event, at)` keeps a stream's state, its text per field across attempts, the
tool calls of the current attempt, the retry countdown and the terminal event. A stream run in
a worker process is known to the front only through it.
"""

from __future__ import annotations

import time
from enum import StrEnum

from tui.streaming.events import Cancelled, Done, Failed, Retrying, Status, StreamEvent, TerminalEvent, Token
from tui.streaming.metrics import StreamMetrics
from tui.streaming.record import AttemptRecord, StreamJob, StreamRecord


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
