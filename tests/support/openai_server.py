"""A real OpenAI-compatible streaming HTTP server on 127.0.0.1, with fault injection.

Provider faults are tested against this server over real sockets, never by patching DSPy.
It speaks HTTP/1.1 with keep-alive, answers ``POST /v1/chat/completions`` (streamed as SSE
``chat.completion.chunk`` events in chunked transfer encoding, ending with ``data: [DONE]``,
or as one JSON ``chat.completion`` when ``stream`` is false), ``GET /v1/models`` and
``GET /v1/models/{id}``. Any other path gets a JSON 404. The ``/v1`` prefix is optional.

Answers are in DSPy ChatAdapter format: the output field names (and types) are read from the
request's system message ("Your output fields are: 1. `reasoning` (str) ...") or, failing that,
from the "Respond with the corresponding output fields ..." reminder in the last user message.
The streamed text is then ``[[ ## reasoning ## ]]\\n...\\n\\n[[ ## answer ## ]]\\n...\\n\\n[[ ##
completed ## ]]``. Typed fields get values that parse: numbers, JSON for list/dict and for any
field with a JSON schema note (Pydantic models), a Literal's first value; a ReAct step names the
listed tools in order (`next_tool_args` built from their argument schemas), then `finish`
after `REACT_TOOL_STEPS`. A request that names no output fields, or ``Behaviour(raw=True)``, gets plain
text. Every SSE event carries one token: a field marker is one token (or several with
``split_markers=True``), each word of a field's value is one token (``" word"``).

Two ways to run it:

* in-process, its event loop in a background thread::

      with OpenAIServer(Behaviour(tokens=5)) as server:
          server.script(Behaviour(status=429, retry_after=1), {"cut_after": 3})
          lm = dspy.LM("openai/test-model", api_base=server.base_url, api_key="x")

* as a subprocess for benchmarks, so it does not share the GIL with the client measured::

      python -m tests.support.openai_server --port 0 --tokens 1000 --tokens-per-s 100

  prints ``PORT <n>`` on the first line of stdout, then serves until killed.
  :class:`ServerProcess` wraps this in a context manager.

Choosing a behaviour, per request, first match wins:

1. a behaviour spelled in the request's model name (below), while its ``times`` lasts;
2. the next entry of the FIFO script (``server.script(...)``), consumed by this request;
3. ``server.default``.

Model-name syntax (for out-of-process clients): ``:``-separated segments; values are
percent-decoded (``%20`` for a space, ``%3A`` for a colon). A model name is a spec only when its
first segment is a shorthand below or contains ``=``; otherwise (``test-model``) it is just a name.

* ``fault:<status>``: an HTTP error status with a JSON error body (``status=<n>`` also works)
* ``cut:<k>`` / ``stall:<k>`` / ``malformed:<k>`` / ``truncate:<k>`` / ``error-event:<k>``:
  the fault of the same name after k tokens (``cut_after=<k>`` and so on also work)
* ``slow:<tokens per second>``, ``raw``
* ``<field>=<value>`` for any :class:`Behaviour` field: ``retry_after=1``, ``tokens=50``,
  ``tokens_per_s=20``, ``first_token_delay=0.5``, ``text=hello%20world``, ``split_markers=1``
* ``times=<n>``: only the first n requests with this exact model name get the behaviour; later
  ones fall through to the script / default. Counters are per server and cleared by ``reset()``.
* ``id=<anything>``: ignored; makes a distinct model name, so a distinct ``times`` counter.

Examples: ``fault:429:retry_after=1:times=2`` (two 429s with ``Retry-After: 1``, then answers),
``cut:5``, ``stall:3:stall_timeout=30``, ``tokens=200:tokens_per_s=50``. With DSPy the model is
``openai/fault:429:retry_after=1:times=2``; the server sees the part after ``openai/``.

Faults (``Behaviour`` fields; "after k tokens" counts SSE content events, markers included):

* ``status``: HTTP error with ``{"error": {"message", "type", "param", "code"}}``; 429 carries
  ``Retry-After`` when ``retry_after`` is set (``headers`` adds any other header).
* ``cut_after``: close the socket mid-stream, no terminating chunk, no ``[DONE]``
  (``reset=True``: abort with RST instead of FIN).
* ``truncate_after``: end the HTTP body cleanly, but with no ``finish_reason`` and no ``[DONE]``.
* ``stall_after``: stop sending but keep the socket open until the client disconnects or
  ``stall_timeout`` seconds pass (then the socket is aborted).
* ``malformed_after``: one SSE event whose data is invalid JSON, then the rest of the stream.
* ``error_event_after``: an in-stream ``data: {"error": {...}}`` event, then the body ends.
* ``tokens_per_s`` / ``token_delay``: pacing; ``first_token_delay`` (after the response head)
  and ``response_delay`` (before it, for errors too).
* ``text`` / ``fields``: custom answer text (Rich markup, escape sequences: all JSON-escaped).
* ``finish_reason``: the last chunk's reason, "stop" unless set ("length": cut by the token limit).
* ``no_choices`` (model name ``no_choices``): every streamed chunk lacks the ``choices`` key.

Every request is recorded in ``server.requests`` (:class:`RecordedRequest`): body, JSON, model,
timestamps (``time.monotonic()``), tokens and text sent, outcome, and ``disconnected_at`` when the
client closed the connection before the response was complete. ``server.disconnects`` counts those;
``server.completions`` lists the chat requests (the attempts). Disconnects are noticed a moment
after they happen: wait with ``server.wait_for(pred)`` (blocking) or ``await server.until(pred)``.
``server.lm_kwargs(model)`` gives ``dspy.LM`` its model, api_base and api_key.

What DSPy 3.4.1 sends (native lm15 engine, user-agent ``lm15/stdlib``): ``POST /v1/chat/completions``
with ``model``, ``messages``, ``stream: true`` and ``stream_options: {"include_usage": true}``, plus
``Authorization: Bearer <api_key>``. ``tests/support/test_openai_server.py`` pins which DSPy error
each fault becomes.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import dataclasses
import functools
import itertools
import json
import re
import subprocess
import sys
import threading
import time
import types
import typing
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

DEFAULT_MODEL = "test-model"
TEST_API_KEY = "sk-test-not-a-real-key"
DEFAULT_SENTENCE = (
    "Streaming answers arrive one token at a time, so the dashboard can show each word as soon as "
    "the model writes it, and nobody waits for the whole reply."
)
DEFAULT_WORDS = tuple(DEFAULT_SENTENCE.split())

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

# OpenAI's error body shapes, so SDKs and DSPy classify them as they would the real service.
_ERROR_KINDS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-test***."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


@dataclass(frozen=True)
class Behaviour:
    """What the server does for one request. Defaults: a healthy, unpaced 20-token answer."""

    tokens: int = 20  # words per generated text field
    tokens_per_s: float | None = None  # None or 0: as fast as possible
    token_delay: float | None = None  # seconds between tokens; overrides tokens_per_s
    first_token_delay: float = 0.0  # after the response head, before the first token
    response_delay: float = 0.0  # before the response head (errors included)
    text: str | None = None  # the answer field's text (field "answer", else the last output field)
    fields: Mapping[str, str] | None = None  # text per output field name
    raw: bool = False  # plain text, no ChatAdapter field markers
    split_markers: bool = False  # stream "[[ ## answer ## ]]" as several tokens, as real LMs do
    token_chars: int | None = None  # a custom text in tokens of this many characters, not words
    usage: bool = True  # send the usage chunk when the request asks for stream_options.include_usage
    status: int | None = None  # an HTTP error status instead of an answer
    error_message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    retry_after: float | str | None = None  # the Retry-After header of an error response
    headers: Mapping[str, str] | None = None  # extra response headers
    cut_after: int | None = None
    reset: bool = False  # cut with RST instead of FIN
    truncate_after: int | None = None
    stall_after: int | None = None
    stall_timeout: float = 60.0
    malformed_after: int | None = None
    error_event_after: int | None = None
    finish_reason: str = "stop"  # "length": the answer was cut by the token limit
    no_choices: bool = False  # stream chunks with no `choices` at all (a broken proxy's shape)

    @property
    def delay(self) -> float:
        """Seconds between tokens."""
        if self.token_delay is not None:
            return max(0.0, self.token_delay)
        if self.tokens_per_s:
            return 1.0 / self.tokens_per_s
        return 0.0

    def replace(self, **changes: Any) -> Behaviour:
        return dataclasses.replace(self, **changes)


_SHORTHANDS = {
    "fault": "status",
    "cut": "cut_after",
    "stall": "stall_after",
    "malformed": "malformed_after",
    "truncate": "truncate_after",
    "error-event": "error_event_after",
    "slow": "tokens_per_s",
}
_FLAGS = {"raw", "reset", "split_markers", "no_choices"}


@functools.cache
def _field_types() -> dict[str, type]:
    hints = typing.get_type_hints(Behaviour)
    kinds: dict[str, type] = {}
    for name, hint in hints.items():
        args = [a for a in typing.get_args(hint) if a is not type(None)] if _is_union(hint) else [hint]
        kinds[name] = args[0] if args else str
    return kinds


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _convert(name: str, value: str) -> Any:
    kind = _field_types().get(name)
    if kind is None:
        raise ValueError(f"unknown Behaviour field {name!r}")
    if kind is bool:
        return value.lower() in ("1", "true", "yes", "on", "")
    if kind is int:
        return int(value)
    if kind is float:
        if name == "retry_after":
            try:
                return float(value)
            except ValueError:
                return value  # an HTTP-date
        return float(value)
    if name in ("headers", "fields"):
        return json.loads(value)
    return value


def parse_model_spec(model: str) -> tuple[dict[str, Any], int | None] | None:
    """The Behaviour overrides and ``times`` spelled in a model name, or None for a plain name."""
    segments = model.split(":")
    first = segments[0]
    if first not in _SHORTHANDS and first not in _FLAGS and "=" not in first:
        return None
    overrides: dict[str, Any] = {}
    times: int | None = None
    index = 0
    while index < len(segments):
        segment = segments[index]
        index += 1
        if not segment:
            continue
        if segment in _SHORTHANDS:
            if index >= len(segments):
                raise ValueError(f"{segment!r} needs a value in model spec {model!r}")
            name = _SHORTHANDS[segment]
            overrides[name] = _convert(name, unquote(segments[index]))
            index += 1
            continue
        if segment in _FLAGS:
            overrides[segment] = True
            continue
        key, sep, value = segment.partition("=")
        key = key.replace("-", "_")
        if not sep:
            raise ValueError(f"cannot read segment {segment!r} of model spec {model!r}")
        if key == "times":
            times = int(value)
        elif key == "id":
            pass
        else:
            overrides[key] = _convert(key, unquote(value))
    return overrides, times


@dataclass
class RecordedRequest:
    """One HTTP request as the server saw it. Times are ``time.monotonic()`` seconds."""

    index: int
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    received_at: float
    json: Any = None
    model: str | None = None
    stream: bool = False
    behaviour: Behaviour | None = None
    status: int | None = None
    outcome: str = "pending"  # complete, error-status, cut, truncated, stalled, stall-timeout, ...
    first_byte_at: float | None = None  # the response head was written
    first_token_at: float | None = None
    finished_at: float | None = None  # the server finished (or gave up on) the response
    disconnected_at: float | None = None  # the client closed before the response was complete
    tokens_sent: int = 0
    text_sent: str = ""  # the content of the tokens sent, joined

    @property
    def disconnected(self) -> bool:
        return self.disconnected_at is not None

    @property
    def is_completion(self) -> bool:
        return self.path.rstrip("/").endswith("/chat/completions")


class _ClientGone(Exception):
    pass


@functools.lru_cache(maxsize=8192)
def _json_str(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode()


def _http_chunk(payload: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(payload), payload)


def _sse(payload: bytes) -> bytes:
    return _http_chunk(b"data: " + payload + b"\n\n")


_DONE = _sse(b"[DONE]")
_LAST_CHUNK = b"0\r\n\r\n"

_OUTPUT_SECTION = re.compile(r"Your output fields are:\n(.*?)(?:\n\n|\Z)", re.S)
_OUTPUT_LINE = re.compile(r"^\d+\.\s+`(\w+)`(?:\s+\(([^)]*)\))?", re.M)
_REMINDER = re.compile(r"Respond with the corresponding output fields(.*)", re.S)
_MARKER = re.compile(r"\[\[ ## (\w+) ## \]\]")


def _message_text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def output_fields(body: Any) -> list[tuple[str, str]]:
    """The (name, type) of each output field a ChatAdapter request asks for; [] for plain chat."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return []
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "system":
            section = _OUTPUT_SECTION.search(_message_text(message))
            if section:
                found = [(name, kind or "str") for name, kind in _OUTPUT_LINE.findall(section.group(1))]
                if found:
                    return found
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if users:
        reminder = _REMINDER.search(_message_text(users[-1]))
        if reminder:
            return [(name, "str") for name in _MARKER.findall(reminder.group(1)) if name != "completed"]
    return []


def split_text(text: str, behaviour: Behaviour) -> list[str]:
    size = behaviour.token_chars
    if size:
        return [text[start : start + size] for start in range(0, len(text), size)]
    return split_words(text)


def split_words(text: str) -> list[str]:
    """Tokens of a custom text: each word with the whitespace before it; nothing lost."""
    pieces = re.findall(r"\s*\S+", text)
    tail = text[len("".join(pieces)) :]
    if tail:
        if pieces:
            pieces[-1] += tail
        else:
            pieces = [tail]
    return pieces


@functools.lru_cache(maxsize=64)
def generated_words(count: int) -> tuple[str, ...]:
    words = itertools.islice(itertools.cycle(DEFAULT_WORDS), count)
    return tuple(word if i == 0 else " " + word for i, word in enumerate(words))


def _value_for(kind: str, behaviour: Behaviour) -> list[str]:
    kind = kind.strip()
    simple = {"int": "42", "float": "0.5", "bool": "True"}
    if kind in simple:
        return [simple[kind]]
    if kind.startswith("Literal["):
        literal = re.match(r"Literal\[\s*'([^']*)'", kind) or re.match(r'Literal\[\s*"([^"]*)"', kind)
        return [literal.group(1)] if literal else list(generated_words(behaviour.tokens))
    if kind.startswith(("list", "dict")):
        return ["[]" if kind.startswith("list") else "{}"]
    return list(generated_words(behaviour.tokens))


_SCHEMA_NOTE = re.compile(
    r"\[\[ ## (\w+) ## \]\]\n\{\1\}\s+# note: the value you produce must adhere to the JSON schema: (.*)"
)
_TOOL_LINE = re.compile(
    r"\(\d+\) (\w+), whose description is <desc>.*?</desc>\. It takes arguments (\{.*?\})\.\s*$", re.S | re.M
)
_OBSERVATION = re.compile(r"\[\[ ## observation_\d+ ## \]\]")
REACT_TOOL_STEPS = 2  # tools a ReAct request calls, in the order listed, before it finishes


@dataclasses.dataclass(frozen=True)
class PromptFacts:
    """What a ChatAdapter prompt says about the answer beyond field names: JSON schemas, tools, steps."""

    schemas: Mapping[str, Any]
    tools: tuple[tuple[str, Mapping[str, Any]], ...]
    steps: int

    def next_tool(self) -> str:
        callable_tools = [name for name, _ in self.tools if name != "finish"]
        if self.steps < min(REACT_TOOL_STEPS, len(callable_tools)):
            return callable_tools[self.steps]
        return "finish"

    def tool_args(self, tool: str) -> dict[str, Any]:
        args = dict(self.tools).get(tool, {})
        return {
            name: value_for_schema(schema if isinstance(schema, dict) else {})
            for name, schema in args.items()
        }


def prompt_facts(body: Any) -> PromptFacts:
    messages = body.get("messages") if isinstance(body, dict) else None
    messages = messages if isinstance(messages, list) else []
    system = "\n".join(
        _message_text(m) for m in messages if isinstance(m, dict) and m.get("role") == "system"
    )
    schemas: dict[str, Any] = {}
    for name, raw in _SCHEMA_NOTE.findall(system):
        try:
            schemas[name] = json.loads(raw)
        except json.JSONDecodeError:
            continue
    tools: list[tuple[str, Mapping[str, Any]]] = []
    for name, raw in _TOOL_LINE.findall(system):
        try:
            args = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            args = {}
        tools.append((name, args if isinstance(args, dict) else {}))
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    steps = len(_OBSERVATION.findall(_message_text(users[-1]))) if users else 0
    return PromptFacts(schemas, tuple(tools), steps)


def value_for_schema(schema: Mapping[str, Any], defs: Mapping[str, Any] | None = None) -> Any:
    """A value that fits a JSON schema (Pydantic's), for typed output fields and tool arguments."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return value_for_schema(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs)
    for combined in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(combined, []) if o.get("type") != "null"]
        if options:
            return value_for_schema(options[0], defs)
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: value_for_schema(sub, defs) for name, sub in properties.items()}
    if kind == "array":
        items = schema.get("items") or {"type": "string"}
        return [value_for_schema(items, defs), value_for_schema(items, defs)]
    return {"integer": 3, "number": 0.75, "boolean": True, "null": None}.get(kind, "dspy stream")


def typed_value(name: str, kind: str, facts: PromptFacts) -> list[str] | None:
    """The value of a field a generic text would not parse as: ReAct's tool choice, JSON types."""
    if name == "next_tool_name" and facts.tools:
        return [facts.next_tool()]
    if name == "next_tool_args" and facts.tools:
        return [json.dumps(facts.tool_args(facts.next_tool()))]
    schema = facts.schemas.get(name)
    if schema is not None and kind.strip() not in ("str", "int", "float", "bool"):
        return [json.dumps(value_for_schema(schema))]
    return None


def _marker(name: str, split: bool, newline: bool = True) -> list[str]:
    end = "\n" if newline else ""
    if split:
        return ["[[", " ##", f" {name}", " ##", " ]]" + end]
    return [f"[[ ## {name} ## ]]{end}"]


def answer_tokens(behaviour: Behaviour, body: Any) -> list[str]:
    """The content tokens the server streams for this request under this behaviour."""
    fields = [] if behaviour.raw else output_fields(body)
    if not fields:
        if behaviour.text is not None:
            return split_text(behaviour.text, behaviour)
        return list(generated_words(behaviour.tokens))
    names = [name for name, _ in fields]
    main = "answer" if "answer" in names else names[-1]
    facts = prompt_facts(body)
    tokens: list[str] = []
    for position, (name, kind) in enumerate(fields):
        if position:
            tokens.append("\n\n")
        tokens.extend(_marker(name, behaviour.split_markers))
        if behaviour.fields and name in behaviour.fields:
            tokens.extend(split_text(behaviour.fields[name], behaviour))
        elif name == main and behaviour.text is not None:
            tokens.extend(split_text(behaviour.text, behaviour))
        else:
            tokens.extend(typed_value(name, kind, facts) or _value_for(kind, behaviour))
    tokens.append("\n\n")
    tokens.extend(_marker("completed", behaviour.split_markers, newline=False))
    return tokens


class _Connection:
    """One client connection: a reader task parses requests, the handler answers them in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.requests: asyncio.Queue[tuple[str, str, dict[str, str], bytes, float] | None] = asyncio.Queue()
        self.gone = asyncio.Event()
        self.in_flight: RecordedRequest | None = None

    async def read_requests(self) -> None:
        try:
            while True:
                try:
                    head = await self.reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                received = time.monotonic()
                lines = head.decode("latin-1").split("\r\n")
                method, path, *_ = [*lines[0].split(" "), "", ""]
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    body = await self._read_chunked()
                else:
                    length = int(headers.get("content-length") or 0)
                    body = await self.reader.readexactly(length) if length else b""
                await self.requests.put((method, path, headers, body, received))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.LimitOverrunError):
            return
        finally:
            self.gone.set()
            record = self.in_flight
            if record is not None and record.disconnected_at is None and record.finished_at is None:
                record.disconnected_at = time.monotonic()
                if record.outcome == "pending":
                    record.outcome = "disconnected"
            self.requests.put_nowait(None)

    async def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return bytes(body)
            body += await self.reader.readexactly(size)
            await self.reader.readexactly(2)

    async def send(self, data: bytes) -> None:
        if self.gone.is_set() or self.writer.is_closing():
            raise _ClientGone
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as error:
            raise _ClientGone from error


class OpenAIServer:
    """An OpenAI-compatible streaming server. ``with OpenAIServer() as server:`` runs it in a thread."""

    def __init__(self, default: Behaviour | None = None, *, host: str = "127.0.0.1", port: int = 0):
        self.default = default or Behaviour()
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self._script: deque[Behaviour] = deque()
        self._model_uses: dict[str, int] = {}
        # A behaviour for every request to a plain model name, e.g. {"gpt-4o": Behaviour(...)}:
        # variants that look like real models and answer each in its own way.
        self.models: dict[str, Behaviour] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    # ---- test-facing API -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def lm_kwargs(self, model: str = DEFAULT_MODEL) -> dict[str, str]:
        """Keyword arguments for ``dspy.LM`` that point it at this server."""
        return {"model": f"openai/{model}", "api_base": self.base_url, "api_key": TEST_API_KEY}

    def script(self, *behaviours: Behaviour | Mapping[str, Any]) -> None:
        """Queue behaviours, one per coming request. A mapping is applied over ``default``."""
        resolved = [b if isinstance(b, Behaviour) else self.default.replace(**b) for b in behaviours]
        with self._lock:
            self._script.extend(resolved)

    @property
    def pending_script(self) -> int:
        with self._lock:
            return len(self._script)

    def reset(self, default: Behaviour | None = None) -> None:
        """Forget requests, script and model-name counters; set a new default behaviour."""
        with self._lock:
            self._script.clear()
            self._model_uses.clear()
            self.models.clear()
            self.requests = []
            self.default = default or Behaviour()

    @property
    def completions(self) -> list[RecordedRequest]:
        """The recorded ``/chat/completions`` requests (the attempts)."""
        return [r for r in self.requests if r.is_completion]

    @property
    def disconnects(self) -> int:
        """How many responses the client abandoned by closing the connection."""
        return sum(1 for r in self.requests if r.disconnected)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block (this thread) until ``predicate()`` holds, e.g. ``lambda: server.disconnects == 1``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.05))
        return True

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Await, from any event loop, until ``predicate()`` holds; False after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    # ---- running ------------------------------------------------------------------------------

    def start(self) -> OpenAIServer:
        """Serve from a background thread; returns once the port is bound."""
        self._thread = threading.Thread(target=self._run_thread, name="openai-test-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the test OpenAI server did not start within 10 s")
        if self._start_error is not None:
            raise self._start_error
        return self

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run_thread(self) -> None:
        try:
            asyncio.run(self.serve())
        except BaseException as error:
            self._start_error = error
            self._ready.set()

    async def serve(self, on_ready: Callable[[int], None] | None = None) -> None:
        """Serve on the running loop until ``stop()`` (or cancellation)."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(
            self._on_connection, self.host, self.port, backlog=1024, limit=4 * 1024 * 1024
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        if on_ready is not None:
            on_ready(self.port)
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---- protocol -----------------------------------------------------------------------------

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _choose(self, model: str | None) -> Behaviour:
        """The behaviour for a request to ``model``; ValueError for a model spec it cannot read."""
        with self._lock:
            if model in self.models:
                return self.models[model]
            spec = parse_model_spec(model) if model else None
            if spec is not None:
                overrides, times = spec
                used = self._model_uses.get(model, 0)
                if times is None or used < times:
                    self._model_uses[model] = used + 1
                    return self.default.replace(**overrides)
            if self._script:
                return self._script.popleft()
            return self.default

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._converse(_Connection(reader, writer))
        except asyncio.CancelledError:
            # The server is stopping. This is the connection's top-level task: ending it quietly
            # keeps asyncio from logging the cancellation as an error of the connection callback.
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            self._notify()

    async def _converse(self, conn: _Connection) -> None:
        reading = asyncio.create_task(conn.read_requests())
        try:
            while True:
                item = await conn.requests.get()
                if item is None:
                    break
                keep_open = await self._respond(conn, *item)
                if not keep_open:
                    break
        except (_ClientGone, ConnectionError):
            pass
        finally:
            if not conn.writer.is_closing():
                conn.writer.close()
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()

    async def _respond(
        self, conn: _Connection, method: str, path: str, headers: dict[str, str], body: bytes, received: float
    ) -> bool:
        record = RecordedRequest(
            index=next(self._ids), method=method, path=path, headers=headers, body=body, received_at=received
        )
        self.requests.append(record)
        conn.in_flight = record
        keep_alive = headers.get("connection", "").lower() != "close"
        route = path.split("?", 1)[0].rstrip("/")
        if route.startswith("/v1/"):
            route = route[3:]
        try:
            if method == "POST" and route == "/chat/completions":
                return await self._completion(conn, record, keep_alive) and keep_alive
            if method in ("GET", "HEAD") and route == "/models":
                data = {"object": "list", "data": [self._model_entry(DEFAULT_MODEL)]}
                await self._json(conn, record, 200, data, keep_alive)
            elif method in ("GET", "HEAD") and route.startswith("/models/"):
                await self._json(conn, record, 200, self._model_entry(unquote(route[8:])), keep_alive)
            elif method == "GET" and route == "/health":
                await self._json(conn, record, 200, {"status": "ok"}, keep_alive)
            else:
                error = {"message": f"Unknown route {method} {path}", "type": "invalid_request_error"}
                await self._json(conn, record, 404, {"error": error}, keep_alive)
            record.outcome = "complete"
            return keep_alive
        except _ClientGone:
            if record.disconnected_at is None and record.finished_at is None:
                record.disconnected_at = time.monotonic()
            record.outcome = "disconnected"
            return False
        finally:
            if record.finished_at is None:
                record.finished_at = time.monotonic()
            conn.in_flight = None
            self._notify()

    @staticmethod
    def _model_entry(model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": 1700000000, "owned_by": "dspy-stream-tests"}

    async def _json(
        self,
        conn: _Connection,
        record: RecordedRequest,
        status: int,
        data: Any,
        keep_alive: bool,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        payload = json.dumps(data, ensure_ascii=False).encode()
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
            f"x-request-id: req_{record.index}",
        ]
        head += [f"{name}: {value}" for name, value in (extra or {}).items()]
        record.status = status
        record.first_byte_at = record.finished_at = time.monotonic()
        await conn.send(
            ("\r\n".join(head) + "\r\n\r\n").encode() + (b"" if record.method == "HEAD" else payload)
        )

    async def _completion(self, conn: _Connection, record: RecordedRequest, keep_alive: bool) -> bool:
        try:
            data = json.loads(record.body or b"null")
        except ValueError:
            data = None
        record.json = data
        if not isinstance(data, dict):
            error = {
                "message": "We could not parse the JSON body of your request.",
                "type": "invalid_request_error",
            }
            await self._json(conn, record, 400, {"error": error}, keep_alive)
            record.outcome = "error-status"
            return True
        model = data.get("model") if isinstance(data.get("model"), str) else None
        record.model = model
        record.stream = bool(data.get("stream"))
        try:
            behaviour = record.behaviour = self._choose(model)
        except (ValueError, TypeError) as problem:
            error = {"message": f"Bad model spec {model!r}: {problem}", "type": "invalid_request_error"}
            await self._json(conn, record, 400, {"error": error}, keep_alive)
            record.outcome = "error-status"
            return True
        if behaviour.response_delay > 0:
            await asyncio.sleep(behaviour.response_delay)
        if behaviour.status is not None and behaviour.status >= 400:
            await self._error_status(conn, record, behaviour, keep_alive)
            return True
        tokens = answer_tokens(behaviour, data)
        if record.stream:
            return await self._stream(conn, record, behaviour, tokens, data, model or DEFAULT_MODEL)
        return await self._whole(conn, record, behaviour, tokens, model or DEFAULT_MODEL, keep_alive)

    async def _error_status(
        self, conn: _Connection, record: RecordedRequest, behaviour: Behaviour, keep_alive: bool
    ) -> None:
        status = behaviour.status or 500
        kind, code, message = _ERROR_KINDS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None, f"HTTP {status}")
        )
        error = {
            "message": behaviour.error_message or message,
            "type": behaviour.error_type or kind,
            "param": None,
            "code": behaviour.error_code or code,
        }
        extra = dict(behaviour.headers or {})
        if behaviour.retry_after is not None:
            value = behaviour.retry_after
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            extra["Retry-After"] = str(value)
        await self._json(conn, record, status, {"error": error}, keep_alive, extra)
        record.outcome = "error-status"

    def _head(self, record: RecordedRequest, behaviour: Behaviour) -> bytes:
        lines = [
            "HTTP/1.1 200 OK",
            "Content-Type: text/event-stream; charset=utf-8",
            "Cache-Control: no-cache",
            "Transfer-Encoding: chunked",
            "Connection: keep-alive",
            f"x-request-id: req_{record.index}",
        ]
        lines += [f"{name}: {value}" for name, value in (behaviour.headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def _stream(
        self,
        conn: _Connection,
        record: RecordedRequest,
        behaviour: Behaviour,
        tokens: list[str],
        body: dict[str, Any],
        model: str,
    ) -> bool:
        created = int(time.time())
        chunk_id = f"chatcmpl-{record.index}"
        head = f'{{"id":"{chunk_id}","object":"chat.completion.chunk","created":{created},'
        head += f'"model":{json.dumps(model)},"system_fingerprint":"fp_test"'
        prefix = (head + ',"choices":[{"index":0,"delta":').encode()
        frames = [
            _sse(prefix + b'{"content":' + _json_str(token) + b'},"finish_reason":null}]}')
            for token in tokens
        ]
        role = _sse(prefix + b'{"role":"assistant","content":""},"finish_reason":null}]}')
        if behaviour.no_choices:
            # Every chunk keeps its id and model, but says nothing: no `choices` key.
            frames = [_sse((head + "}").encode()) for _ in tokens]
            role = _sse((head + "}").encode())
        record.status = 200
        record.first_byte_at = time.monotonic()
        await conn.send(self._head(record, behaviour) + role)
        if behaviour.first_token_delay > 0:
            await asyncio.sleep(behaviour.first_token_delay)
        delay = behaviour.delay
        start = time.monotonic()
        sent_text: list[str] = []
        for position in range(len(frames) + 1):
            if position == behaviour.cut_after:
                record.text_sent = "".join(sent_text)
                record.outcome = "cut"
                record.finished_at = time.monotonic()
                if behaviour.reset:
                    conn.writer.transport.abort()
                else:
                    conn.writer.close()
                return False
            if position == behaviour.truncate_after:
                record.outcome = "truncated"
                record.text_sent = "".join(sent_text)
                record.finished_at = time.monotonic()
                await conn.send(_LAST_CHUNK)
                return True
            if position == behaviour.error_event_after:
                error = {
                    "message": behaviour.error_message or "The server had an error while streaming.",
                    "type": behaviour.error_type or "server_error",
                    "param": None,
                    "code": behaviour.error_code or "server_error",
                }
                record.text_sent = "".join(sent_text)
                record.outcome = "error-event"
                record.finished_at = time.monotonic()
                await conn.send(_sse(json.dumps({"error": error}).encode()) + _LAST_CHUNK)
                return True
            if position == behaviour.malformed_after:
                await conn.send(_sse(prefix + b'{"content": "unterminated'))
            if position == behaviour.stall_after:
                record.text_sent = "".join(sent_text)
                record.outcome = "stalled"
                self._notify()
                try:
                    await asyncio.wait_for(conn.gone.wait(), behaviour.stall_timeout)
                except TimeoutError:
                    record.outcome = "stall-timeout"
                    record.finished_at = time.monotonic()
                    conn.writer.transport.abort()
                return False
            if position == len(frames):
                break
            if delay and position:
                wait = start + delay * position - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            elif not delay:
                await asyncio.sleep(0)  # one write per token, interleaved with the other streams
            await conn.send(frames[position])
            if position == 0:
                record.first_token_at = time.monotonic()
            record.tokens_sent += 1
            sent_text.append(tokens[position])
        record.text_sent = "".join(sent_text)
        tail = _sse(prefix + b'{},"finish_reason":' + _json_str(behaviour.finish_reason) + b"}]}")
        if behaviour.no_choices:
            tail = b""
        options = body.get("stream_options")
        if behaviour.usage and isinstance(options, dict) and options.get("include_usage"):
            usage = self._usage(body, len(tokens))
            tail += _sse(
                f'{{"id":"{chunk_id}","object":"chat.completion.chunk","created":{created},'
                f'"model":{json.dumps(model)},"choices":[],"usage":{json.dumps(usage)}}}'.encode()
            )
        record.outcome = "complete"
        record.finished_at = time.monotonic()
        await conn.send(tail + _DONE + _LAST_CHUNK)
        return True

    @staticmethod
    def _usage(body: dict[str, Any], completion_tokens: int) -> dict[str, int]:
        prompt = sum(len(_message_text(m).split()) for m in body.get("messages") or [] if isinstance(m, dict))
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        }

    async def _whole(
        self,
        conn: _Connection,
        record: RecordedRequest,
        behaviour: Behaviour,
        tokens: list[str],
        model: str,
        keep_alive: bool,
    ) -> bool:
        """A non-streaming answer; faults after k tokens act on the whole body."""
        if behaviour.first_token_delay > 0:
            await asyncio.sleep(behaviour.first_token_delay)
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay * len(tokens))
        if behaviour.stall_after is not None:
            record.outcome = "stalled"
            try:
                await asyncio.wait_for(conn.gone.wait(), behaviour.stall_timeout)
            except TimeoutError:
                record.outcome = "stall-timeout"
                conn.writer.transport.abort()
            return False
        if behaviour.cut_after is not None:
            record.outcome = "cut"
            record.finished_at = time.monotonic()
            if behaviour.reset:
                conn.writer.transport.abort()
            else:
                conn.writer.close()
            return False
        text = "".join(tokens)
        data = {
            "id": f"chatcmpl-{record.index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": self._usage(record.json or {}, len(tokens)),
        }
        await self._json(conn, record, 200, data, keep_alive, behaviour.headers)
        record.tokens_sent = len(tokens)
        record.text_sent = text
        record.outcome = "complete"
        return True


class ServerProcess:
    """``python -m tests.support.openai_server`` as a context manager, for benchmarks.

    ``with ServerProcess(tokens=1000, tokens_per_s=100) as proc: proc.base_url``.
    """

    def __init__(
        self, *, tokens: int = 20, tokens_per_s: float | None = None, extra_args: Iterable[str] = ()
    ):
        self.args = [
            sys.executable,
            "-m",
            "tests.support.openai_server",
            "--port",
            "0",
            "--tokens",
            str(tokens),
        ]
        if tokens_per_s:
            self.args += ["--tokens-per-s", str(tokens_per_s)]
        self.args += list(extra_args)
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> ServerProcess:
        root = Path(__file__).resolve().parents[2]
        self.process = subprocess.Popen(self.args, cwd=root, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.process.kill()
            raise RuntimeError(f"the server process did not report its port: {line!r}")
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible streaming test server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--tokens-per-s", type=float, default=None)
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    parser.add_argument("--text", default=None)
    parser.add_argument("--finish-reason", default="stop", help='"length": answers cut by the token limit')
    args = parser.parse_args(argv)
    default = Behaviour(
        tokens=args.tokens,
        tokens_per_s=args.tokens_per_s,
        first_token_delay=args.first_token_delay,
        text=args.text,
        finish_reason=args.finish_reason,
    )
    server = OpenAIServer(default, host=args.host, port=args.port)
    # Benchmarks can make many requests; a long-running server keeps no history.
    server.requests = _Discard()

    def announce(port: int) -> None:
        print(f"PORT {port}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(on_ready=announce))


class _Discard(list):
    def append(self, item: Any) -> None:
        pass


if __name__ == "__main__":
    main()
