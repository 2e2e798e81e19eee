"""What crosses the pipe between the front and a worker: length-prefixed pickles of plain tuples.

Events travel as tuples (a tag, the fields, the worker's CLOCK_MONOTONIC time when the event
was taken from its stream), batched per flush; a stream's figures travel beside them as the
fields of its `StreamMetrics` that changed since the last batch. A `Done`'s Prediction travels
as a plain dict of JSON values, so the front never needs DSPy to read it.

Commands (front -> worker): ("prepare", settings), ("start", key, job, forced_faults, seed,
credit), ("credit", key, n), ("cancel", key), ("shutdown",).
Replies (worker -> front): ("ready", program_info), ("refused", kind, message),
("batch", [(key, events, figures), ...]).
"""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any

from tui.streaming.events import Cancelled, Done, Failed, Retrying, Status, StreamEvent, Token
from tui.streaming.metrics import StreamMetrics
from tui.streaming.record import prediction_json

_LENGTH = struct.Struct("!I")
PROTOCOL = pickle.HIGHEST_PROTOCOL


def frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=PROTOCOL)
    return _LENGTH.pack(len(body)) + body


def write_message(fd: int, message: Any) -> None:
    """Write one whole message to `fd` (blocking): a pipe write may take several calls."""
    view = memoryview(frame(message))
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int) -> Any:
    """The next message from `fd` (blocking); None once the other end has closed."""
    head = _read_exactly(fd, _LENGTH.size)
    if head is None:
        return None
    body = _read_exactly(fd, _LENGTH.unpack(head)[0])
    return None if body is None else pickle.loads(body)


class PredictionData(dict):
    """A Prediction's fields as JSON values, readable as a Prediction is (`p[name]`, `p.get`)."""


def encode(event: StreamEvent, at: float) -> tuple:
    match event:
        case Token(field=field, text=text):
            return ("t", field, text, at)
        case Status(message=message, kind=kind, ahead=ahead):
            return ("s", message, kind, ahead, at)
        case Retrying():
            return ("r", event.attempt, event.max_attempts, event.delay, event.error, event.injected, at)
        case Done(prediction=prediction, cache_hit=cache_hit):
            return ("d", prediction_values(prediction), cache_hit, at)
        case Failed(error=error, partial_text=partial):
            return ("f", error, partial, at)
        case Cancelled(partial_text=partial):
            return ("c", partial, at)
    raise TypeError(f"not a stream event: {event!r}")


TERMINAL_TAGS = ("d", "f", "c")


def is_terminal_item(item: tuple) -> bool:
    """An encoded event that ends its stream."""
    return item[0] in TERMINAL_TAGS


def decode(item: tuple) -> tuple[StreamEvent, float]:
    """An event and the worker's time for it."""
    tag = item[0]
    if tag == "t":
        return Token(item[1], item[2]), item[3]
    if tag == "s":
        return Status(item[1], item[2], item[3]), item[4]
    if tag == "r":
        return Retrying(item[1], item[2], item[3], item[4], item[5]), item[6]
    if tag == "d":
        prediction = None if item[1] is None else PredictionData(item[1])
        return Done(prediction, item[2]), item[3]
    if tag == "f":
        return Failed(item[1], item[2]), item[3]
    if tag == "c":
        return Cancelled(item[1]), item[2]
    raise ValueError(f"unknown event tag {tag!r}")


def prediction_values(prediction: Any) -> dict[str, Any] | None:
    if prediction is None:
        return None
    return prediction_json(prediction)


# The figures a worker's StreamMetrics holds that the front's copy needs; the token times for the
# live rate come with the tokens themselves.
FIGURES = tuple(
    name
    for name in StreamMetrics.__dataclass_fields__
    if name not in ("clock", "_recent", "itls", "field_ttfts")
)


class FiguresDelta:
    """What changed in one stream's `StreamMetrics` since the last call, for a worker's batches."""

    def __init__(self, metrics: StreamMetrics) -> None:
        self.metrics = metrics
        self._sent: dict[str, Any] = {}
        self._attempts = 0
        self._itls_sent = 0
        self._ttfts_sent = 0

    def take(self) -> dict[str, Any] | None:
        metrics = self.metrics
        changed = {
            name: value
            for name in FIGURES
            if self._sent.get(name, _UNSET) != (value := getattr(metrics, name))
        }
        self._sent.update(changed)
        if metrics.attempts != self._attempts or len(metrics.itls) < self._itls_sent:
            self._attempts = metrics.attempts  # a new attempt starts its gaps over
            changed["itls"] = (0, list(metrics.itls))
            self._ttfts_sent = -1
        elif len(metrics.itls) > self._itls_sent:
            changed["itls"] = (self._itls_sent, metrics.itls[self._itls_sent :])
        self._itls_sent = len(metrics.itls)
        if len(metrics.field_ttfts) != self._ttfts_sent:
            changed["field_ttfts"] = dict(metrics.field_ttfts)
            self._ttfts_sent = len(metrics.field_ttfts)
        return changed or None


_UNSET = object()


def apply_figures(metrics: StreamMetrics, changed: dict[str, Any]) -> None:
    """Bring the front's copy of a stream's figures up to the worker's."""
    for name, value in changed.items():
        if name == "itls":
            start, gaps = value
            del metrics.itls[start:]
            metrics.itls.extend(gaps)
        else:
            setattr(metrics, name, value)
