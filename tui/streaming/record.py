"""What a stream is asked and what it produced: plain data every consumer reads, on either side
of a worker process boundary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StreamJob:
    """One question to stream, and the stream's place among its siblings.

    `question` is the text shown for the stream; `inputs` maps each of the program's input
    fields to its value (empty: the program's one input field is `question`).
    """

    question: str
    stream_id: int = 0
    inputs: Mapping[str, str] = field(default_factory=dict)
    # With variants (`--model a --model b`): which one this stream runs (its label and column,
    # from 1), and which question of the run it asks, the same for every variant.
    variant: str = ""
    variant_no: int = 0
    question_no: int = 0

    @property
    def tag(self) -> str:
        """How lines and panes name the stream: `3`, or `Q3 · gpt-4o-mini · predict`."""
        return f"Q{self.question_no} · {self.variant}" if self.variant else str(self.stream_id)

    @property
    def program_inputs(self) -> dict[str, str]:
        return dict(self.inputs) if self.inputs else {"question": self.question}


@dataclass
class AttemptRecord:
    """What one attempt produced before it ended: kept, so no partial answer is lost."""

    number: int
    text: dict[str, str]
    error: str = ""


@dataclass
class StreamRecord:
    """Everything a stream produced, across attempts: the saved transcript's source."""

    question: str
    attempts: list[AttemptRecord] = field(default_factory=list)
    prediction: Any = None
    error: str = ""

    @property
    def current(self) -> dict[str, str]:
        return self.attempts[-1].text if self.attempts else {}

    def field_text(self, name: str) -> str:
        return self.current.get(name, "")

    @property
    def text(self) -> str:
        """The delivered attempt's text, fields in streaming order."""
        return "\n\n".join(t for t in self.current.values() if t)


def json_value(value: Any) -> Any:
    """A Prediction's value as JSON: numbers and lists as themselves, Pydantic models as objects."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return json_value(dump(mode="json"))
        except Exception:
            pass
    return str(value)


def prediction_json(prediction: Any) -> dict[str, Any]:
    """Every field of the final Prediction; {} when there is none."""
    if prediction is None or not hasattr(prediction, "keys"):
        return {}
    names = list(prediction.keys())
    return {name: json_value(prediction.get(name)) for name in names}
