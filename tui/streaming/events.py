"""The product's vocabulary: what one stream says to every consumer.

Every stream yields any number of `Token`, `Status` and `Retrying` events and
ends with exactly one terminal event: `Done`, `Failed` or `Cancelled`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Token:
    """A piece of streamed text for one output field (`answer`, `reasoning`, ...)."""

    field: str
    text: str


@dataclass(frozen=True, slots=True)
class Status:
    """A note about the stream: its own state, or what the program is doing.

    `kind` is `state` for the stream's lifecycle ("queued", "loading model", "streaming"),
    `tool` for a tool call or its result, `stage` for a module starting or ending, `output` for
    a line the program printed: these three make a program's timeline. `ahead`, with "queued"
    from the embedded model, is how many streams the model serves before this one.
    """

    message: str
    kind: str = "state"
    ahead: int | None = None


@dataclass(frozen=True, slots=True)
class Retrying:
    """Attempt `attempt` failed; the next starts over after `delay` seconds.

    Consumers reset the text shown for the stream: the retry streams from the start.
    """

    attempt: int
    max_attempts: int
    delay: float
    error: str
    injected: bool = False


@dataclass(frozen=True, slots=True)
class Done:
    """The stream finished; `prediction` is DSPy's final `Prediction`."""

    prediction: Any
    cache_hit: bool = False


@dataclass(frozen=True, slots=True)
class Failed:
    """The stream gave up. `error` is one human line; `partial_text` what had arrived."""

    error: str
    partial_text: str = ""


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The stream was cancelled by its consumer; `partial_text` is what had arrived."""

    partial_text: str = ""


StreamEvent = Token | Status | Retrying | Done | Failed | Cancelled
TerminalEvent = Done | Failed | Cancelled
TERMINAL_EVENTS = (Done, Failed, Cancelled)


@dataclass(frozen=True, slots=True)
class Tagged:
    """An event from one of several merged streams, with the stream it came from."""

    stream_id: int
    event: StreamEvent
    at: float = field(default=0.0, compare=False)


def is_terminal(event: StreamEvent) -> bool:
    return isinstance(event, TERMINAL_EVENTS)
