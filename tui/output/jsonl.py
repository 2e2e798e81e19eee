"""`--jsonl`: one JSON object a line for each event of each stream, for other programs to read.

Every record has `stream` (its number), `event` and `time` (seconds since the writer began);
with variants, also `question_no` and `variant` (its label).
`start` has the `question`; `token` the `field` and `text`; `status` the `kind` and `text`;
`retry` the `attempt`, `max_attempts`, `delay` and `error`; the one last record of a stream is
`done` (`text`: the answer, `tokens`, `reason`: the server's finish reason), `failed` (`error`,
`text`: what had arrived) or `cancelled` (`reason`, `text`). Each line is flushed as written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from tui.streaming.events import Cancelled, Done, Failed, Retrying, Status, StreamEvent, Token
from tui.streaming.safe_text import hide_secrets

if TYPE_CHECKING:
    from tui.streaming.session_base import LiveStream as StreamRun


class JsonlEvents:
    def __init__(
        self,
        out: IO[str],
        *,
        safe: bool = False,
        before_write: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        self.safe = safe  # on a terminal, non-ASCII is escaped too, so no bidi control acts
        self.before_write = before_write
        self.clock = clock
        self.began = clock()
        # Why a stream cancelled from now on ends: "cancelled", or the signal that stops the run.
        self.reason = "cancelled"
        self._open: dict[int, StreamRun] = {}

    def started(self, run: StreamRun) -> None:
        self._open[run.job.stream_id] = run
        self._write(run, "start", question=run.job.question)

    def feed(self, run: StreamRun, event: StreamEvent) -> None:
        match event:
            case Token(field=name, text=text):
                self._write(run, "token", field=name, text=text)
            case Status(message=message, kind=kind):
                self._write(run, "status", kind=kind, text=message)
            case Retrying(attempt=attempt, max_attempts=most, delay=delay, error=error):
                self._write(
                    run, "retry", attempt=attempt, max_attempts=most, delay=round(delay, 3), error=error
                )
            case Done():
                self._end(run)
                final = run.info.final_output.key
                self._write(
                    run, "done", field=final, text=run.record.field_text(final),
                    tokens=run.metrics.tokens, reason=run.metrics.finish_reason or "stop",
                )  # fmt: skip
            case Failed(error=error):
                self._end(run)
                self._write(run, "failed", error=error, text=run.record.text)
            case Cancelled():
                self._end(run)
                self._write(run, "cancelled", reason=self.reason, text=run.record.text)

    def close(self) -> None:
        """A last record for every stream that has none yet (the run was stopped under it)."""
        for run in list(self._open.values()):
            self.feed(run, Cancelled(run.record.text))

    def _end(self, run: StreamRun) -> None:
        if self._open.get(run.job.stream_id) is run:
            del self._open[run.job.stream_id]

    def _write(self, run: StreamRun, event: str, **fields: Any) -> None:
        record: dict[str, Any] = {
            "stream": run.job.stream_id,
            "event": event,
            "time": round(self.clock() - self.began, 3),
        }
        if run.job.variant:  # comparing: which question, on which variant
            record["question_no"] = run.job.question_no
            record["variant"] = run.job.variant
        for name, value in fields.items():
            record[name] = hide_secrets(value) if isinstance(value, str) else value
        if self.before_write is not None:
            self.before_write()
        self.out.write(json.dumps(record, ensure_ascii=self.safe) + "\n")
        self.out.flush()
