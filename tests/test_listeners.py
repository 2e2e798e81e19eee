"""QuickStreamListener yields exactly what DSPy's own StreamListener yields, for every adapter,
however the provider splits its stream."""

from __future__ import annotations

import random
from types import SimpleNamespace

import dspy
import pytest
from dspy.streaming import StreamListener

from tui.models.listeners import QuickStreamListener, TokenBuffer
from tui.models.plain_adapter import PlainAdapter, PlainStreamListener

FIELDS = ("reasoning", "answer")
# Values that come near each adapter's markers: brackets, hashes, braces, quotes, tags, blank lines.
VALUES = [
    "Streams show tokens as they arrive.",
    "  leading and trailing spaces  ",
    "A [bracket] and [[ double ]] ones, [[ ## not a field",
    "ends with a bracket [",
    "line one\n\nline two\n",
    'quotes " and braces { } and a "key": value',
    "a tag <answer> inside </reasoning> text <",
    "hash ## marks ## here",
    "x",
    "",
]


def chat_text(values: dict[str, str]) -> str:
    body = "".join(f"[[ ## {name} ## ]]\n{value}\n\n" for name, value in values.items())
    return body + "[[ ## completed ## ]]\n"


def json_text(values: dict[str, str]) -> str:
    import json

    return json.dumps(values, indent=2)


def xml_text(values: dict[str, str]) -> str:
    return "".join(f"<{name}>\n{value}\n</{name}>\n" for name, value in values.items())


FORMATS = {
    "chat": (dspy.ChatAdapter, chat_text),
    "plain": (PlainAdapter, chat_text),
    "json": (dspy.JSONAdapter, json_text),
    "xml": (dspy.XMLAdapter, xml_text),
}


def chunks(text: str, rng: random.Random) -> list[str]:
    out, at = [], 0
    while at < len(text):
        size = rng.choice((1, 1, 2, 3, 4, 5, 8, 13, 40))
        out.append(text[at : at + size])
        at += size
    return out


class StockPlainListener(StreamListener):
    """DSPy's own listener, told that PlainAdapter streams ChatAdapter's format."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.adapter_identifiers[PlainAdapter.__name__] = self.adapter_identifiers["ChatAdapter"]


def stream(kind: type[StreamListener], adapter: dspy.Adapter, pieces: list[str], repeats: int) -> list:
    predict = dspy.Predict("question -> reasoning, answer")
    listeners = [kind(name, predict=predict, predict_name="predict", allow_reuse=True) for name in FIELDS]
    seen = []
    with dspy.context(adapter=adapter):
        for _ in range(repeats):  # a reused predictor streams its fields again (ReAct's steps)
            for piece in pieces:
                chunk = SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(content=piece))])
                for listener in listeners:
                    if (response := listener.receive(chunk)) is not None:
                        seen.append((response.signature_field_name, response.chunk, response.is_last_chunk))
            for listener in listeners:
                if (response := listener.finalize()) is not None:
                    seen.append((response.signature_field_name, response.chunk, "final"))
    return seen


@pytest.mark.parametrize("name", FORMATS)
def test_same_chunks_as_dspy_listener(name: str) -> None:
    adapter_type, render = FORMATS[name]
    stock, quick = (
        (StockPlainListener, PlainStreamListener)
        if adapter_type is PlainAdapter
        else (StreamListener, QuickStreamListener)
    )
    rng = random.Random(f"listeners-{name}")
    compared = 0
    for _ in range(150):
        values = {field: rng.choice(VALUES) for field in FIELDS}
        pieces = chunks(render(values), rng)
        repeats = rng.choice((1, 1, 2))
        expected = stream(stock, adapter_type(), pieces, repeats)
        assert stream(quick, adapter_type(), pieces, repeats) == expected
        compared += len(expected)
    assert compared > 300  # the cases stream text, not nothing


def test_unknown_adapter_refused_as_dspy_refuses() -> None:
    class OwnAdapter(dspy.Adapter):
        pass

    chunk = SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(content="[[ ## answer ## ]]"))])
    errors = []
    for kind in (StreamListener, QuickStreamListener):
        with dspy.context(adapter=OwnAdapter()), pytest.raises(ValueError) as caught:
            kind("answer").receive(chunk)
        errors.append(str(caught.value))
    assert errors[0] == errors[1]


def test_token_buffer_is_a_fifo() -> None:
    buffer = TokenBuffer(["a"])
    buffer.put("b")
    assert (buffer.qsize(), buffer.get(), list(buffer.queue)) == (2, "a", ["b"])
