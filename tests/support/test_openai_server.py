"""Self-tests of the loopback OpenAI server: plain HTTP first, then real DSPy streaming.

The DSPy tests double as a contract: they pin which DSPy exception (and which ``status`` /
``retry_after``) each provider fault becomes, which the retry classifier relies on.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from typing import Any

import pytest

from tests.support.openai_server import (
    TEST_API_KEY,
    Behaviour,
    OpenAIServer,
    ServerProcess,
    answer_tokens,
    generated_words,
    parse_model_spec,
)

CHAT_ADAPTER_SYSTEM = (
    "Your input fields are:\n1. `question` (str):\nYour output fields are:\n1. `reasoning` (str): \n"
    "2. `answer` (str):\nAll interactions will be structured in the following way, with the appropriate "
    "values filled in.\n\n[[ ## question ## ]]\n{question}\n\n[[ ## reasoning ## ]]\n{reasoning}\n\n"
    "[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]\nIn adhering to this structure, "
    "your objective is: "
)


def chat_body(model: str = "test-model", stream: bool = True, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Hello?"}],
        "stream": stream,
    }
    body.update(extra)
    return body


def connect(server: OpenAIServer, timeout: float = 5.0) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)


def post(conn: http.client.HTTPConnection, body: dict[str, Any]) -> http.client.HTTPResponse:
    conn.request(
        "POST",
        "/v1/chat/completions",
        body=json.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TEST_API_KEY}"},
    )
    return conn.getresponse()


def read_events(response: http.client.HTTPResponse) -> tuple[list[str], BaseException | None]:
    """The SSE data payloads, and the error that ended the read early, if any."""
    events: list[str] = []
    try:
        while line := response.readline():
            text = line.decode().rstrip("\n")
            if text.startswith("data: "):
                events.append(text[len("data: ") :])
    except (http.client.IncompleteRead, OSError) as error:
        return events, error
    return events, None


def content_of(events: list[str]) -> str:
    text = []
    for event in events:
        if event == "[DONE]":
            continue
        choices = json.loads(event).get("choices") or [{}]
        text.append(choices[0].get("delta", {}).get("content") or "")
    return "".join(text)


# ---- plain HTTP ---------------------------------------------------------------------------------


def test_models_endpoint_lists_the_test_model(openai_server: OpenAIServer) -> None:
    conn = connect(openai_server)
    conn.request("GET", "/v1/models")
    response = conn.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["data"][0]["id"] == "test-model"
    conn.request("GET", "/v1/nowhere")
    missing = conn.getresponse()
    assert missing.status == 404
    assert "error" in json.loads(missing.read())


def test_plain_chat_streams_one_token_per_chunk_then_done(openai_server: OpenAIServer) -> None:
    openai_server.default = Behaviour(tokens=5)
    conn = connect(openai_server)
    response = post(conn, chat_body(stream_options={"include_usage": True}))
    assert response.status == 200
    assert response.getheader("Content-Type").startswith("text/event-stream")
    events, error = read_events(response)
    assert error is None
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    contents = [c["choices"][0]["delta"]["content"] for c in chunks[1:6]]
    assert contents == list(generated_words(5))
    assert chunks[6]["choices"][0]["finish_reason"] == "stop"
    assert chunks[7]["usage"]["completion_tokens"] == 5
    record = openai_server.requests[-1]
    assert (record.model, record.stream, record.outcome, record.tokens_sent) == (
        "test-model",
        True,
        "complete",
        5,
    )
    assert record.json["stream_options"] == {"include_usage": True}
    assert record.first_byte_at is not None and record.first_byte_at >= record.received_at
    assert not record.disconnected


def test_chat_adapter_fields_are_read_from_the_system_message(openai_server: OpenAIServer) -> None:
    body = chat_body(
        messages=[{"role": "system", "content": CHAT_ADAPTER_SYSTEM}, {"role": "user", "content": "Q"}]
    )
    openai_server.default = Behaviour(tokens=3, fields={"reasoning": "Because."})
    events, _ = read_events(post(connect(openai_server), body))
    words = "".join(generated_words(3))
    expected = f"[[ ## reasoning ## ]]\nBecause.\n\n[[ ## answer ## ]]\n{words}\n\n[[ ## completed ## ]]"
    assert content_of(events) == expected


def test_raw_behaviour_ignores_field_markers() -> None:
    body = chat_body(messages=[{"role": "system", "content": CHAT_ADAPTER_SYSTEM}])
    assert "".join(answer_tokens(Behaviour(raw=True, text="just text"), body)) == "just text"
    split = answer_tokens(Behaviour(split_markers=True, tokens=1), body)
    assert "".join(split).startswith("[[ ## reasoning ## ]]\n") and "[[ ## reasoning ## ]]\n" not in split


def test_custom_text_with_markup_and_escapes_is_json_escaped(openai_server: OpenAIServer) -> None:
    text = 'Say [bold red]x[/] and \x1b[2J then "quotes" \\ and ünïcode\nnew line'
    openai_server.default = Behaviour(text=text)
    response = post(connect(openai_server), chat_body())
    raw_lines = response.read().decode().splitlines()
    assert not any("\x1b" in line for line in raw_lines)
    assert any("\\u001b[2J" in line for line in raw_lines)
    events = [line[6:] for line in raw_lines if line.startswith("data: ")]
    assert content_of(events) == text


def test_non_streaming_request_gets_one_completion(openai_server: OpenAIServer) -> None:
    openai_server.default = Behaviour(tokens=4)
    response = post(connect(openai_server), chat_body(stream=False))
    data = json.loads(response.read())
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"] == "".join(generated_words(4))


def test_keep_alive_serves_several_requests_on_one_connection(openai_server: OpenAIServer) -> None:
    conn = connect(openai_server)
    for _ in range(3):
        events, error = read_events(post(conn, chat_body()))
        assert error is None and events[-1] == "[DONE]"
    assert len(openai_server.requests) == 3
    assert openai_server.disconnects == 0


@pytest.mark.parametrize("status", [400, 401, 404, 422, 429, 500, 503])
def test_status_faults_answer_with_an_openai_error_body(openai_server: OpenAIServer, status: int) -> None:
    openai_server.script(Behaviour(status=status, retry_after=2 if status == 429 else None))
    conn = connect(openai_server)
    response = post(conn, chat_body())
    body = json.loads(response.read())
    assert response.status == status
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert response.getheader("Retry-After") == ("2" if status == 429 else None)
    # The script is spent: the next request on the same connection is answered.
    events, _ = read_events(post(conn, chat_body()))
    assert events[-1] == "[DONE]"
    assert [r.outcome for r in openai_server.requests] == ["error-status", "complete"]


def test_script_is_consumed_in_order_then_the_default_applies(openai_server: OpenAIServer) -> None:
    openai_server.script(Behaviour(status=500), {"tokens": 2}, Behaviour(status=503))
    conn = connect(openai_server)
    statuses = []
    for _ in range(4):
        response = post(conn, chat_body())
        response.read()
        statuses.append(response.status)
    assert statuses == [500, 200, 503, 200]
    assert [r.tokens_sent for r in openai_server.requests] == [0, 2, 0, 20]
    assert openai_server.pending_script == 0


def test_model_name_spec_applies_for_its_times(openai_server: OpenAIServer) -> None:
    conn = connect(openai_server)
    statuses = []
    for _ in range(3):
        response = post(conn, chat_body(model="fault:429:retry_after=1:times=2"))
        response.read()
        statuses.append((response.status, response.getheader("Retry-After")))
    assert statuses == [(429, "1"), (429, "1"), (200, None)]
    response = post(conn, chat_body(model="nonsense=1"))
    assert response.status == 400
    response.read()


def test_parse_model_spec() -> None:
    assert parse_model_spec("test-model") is None
    assert parse_model_spec("fault:429:retry_after=1:times=2") == ({"status": 429, "retry_after": 1.0}, 2)
    assert parse_model_spec("no_choices") == ({"no_choices": True}, None)
    assert parse_model_spec("cut:5:reset") == ({"cut_after": 5, "reset": True}, None)
    assert parse_model_spec("text=a%20b%3Ac:raw:id=x") == ({"text": "a b:c", "raw": True}, None)
    assert parse_model_spec("slow:20:tokens=3") == ({"tokens_per_s": 20.0, "tokens": 3}, None)


def test_cut_closes_the_socket_mid_stream_without_done(openai_server: OpenAIServer) -> None:
    openai_server.script(Behaviour(cut_after=3))
    events, error = read_events(post(connect(openai_server), chat_body()))
    assert error is not None or events[-1] != "[DONE]"
    assert "[DONE]" not in events
    assert content_of(events) == "".join(generated_words(3))
    record = openai_server.requests[-1]
    assert (record.outcome, record.tokens_sent, record.disconnected) == ("cut", 3, False)


def test_truncate_ends_the_body_cleanly_without_done(openai_server: OpenAIServer) -> None:
    openai_server.script(Behaviour(truncate_after=2))
    conn = connect(openai_server)
    events, error = read_events(post(conn, chat_body()))
    assert error is None and "[DONE]" not in events
    assert content_of(events) == "".join(generated_words(2))
    events, _ = read_events(post(conn, chat_body()))  # the connection is still good
    assert events[-1] == "[DONE]"


def test_malformed_chunk_is_invalid_json(openai_server: OpenAIServer) -> None:
    openai_server.script(Behaviour(malformed_after=1, tokens=3))
    events, _ = read_events(post(connect(openai_server), chat_body()))
    bad = []
    for event in events[:-1]:
        try:
            json.loads(event)
        except ValueError:
            bad.append(event)
    assert len(bad) == 1 and events.index(bad[0]) == 2  # after the role chunk and one token
    assert events[-1] == "[DONE]"


def test_error_event_mid_stream(openai_server: OpenAIServer) -> None:
    openai_server.script(Behaviour(error_event_after=2, error_message="boom"))
    events, error = read_events(post(connect(openai_server), chat_body()))
    assert error is None
    assert json.loads(events[-1])["error"]["message"] == "boom"


def test_stall_holds_the_socket_until_the_client_leaves(openai_server: OpenAIServer) -> None:
    openai_server.script(Behaviour(stall_after=2))
    conn = connect(openai_server, timeout=0.3)
    events, error = read_events(post(conn, chat_body()))
    assert isinstance(error, socket.timeout | TimeoutError)
    assert content_of(events) == "".join(generated_words(2))
    assert openai_server.requests[-1].outcome == "stalled"
    assert openai_server.disconnects == 0
    conn.close()
    assert openai_server.wait_for(lambda: openai_server.disconnects == 1, timeout=2)
    record = openai_server.requests[-1]
    assert record.disconnected_at is not None and record.disconnected_at > record.first_token_at


def test_pacing_and_first_token_delay(openai_server: OpenAIServer) -> None:
    openai_server.script(Behaviour(tokens=6, tokens_per_s=50, first_token_delay=0.1))
    started = time.monotonic()
    events, _ = read_events(post(connect(openai_server), chat_body()))
    elapsed = time.monotonic() - started
    record = openai_server.requests[-1]
    assert record.first_token_at - record.first_byte_at >= 0.09
    assert elapsed >= 0.1 + 5 / 50 - 0.01
    assert events[-1] == "[DONE]"


async def test_many_concurrent_paced_streams(openai_server: OpenAIServer) -> None:
    openai_server.default = Behaviour(tokens=20, tokens_per_s=100)
    payload = json.dumps(chat_body()).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode()

    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", openai_server.port)
        writer.write(head + payload)
        data = await reader.read()
        writer.close()
        return data.count(b'"delta":{"content"')

    started = time.monotonic()
    counts = await asyncio.gather(*(one() for _ in range(64)))
    elapsed = time.monotonic() - started
    assert counts == [20] * 64
    assert elapsed < 1.5  # 19 gaps of 10 ms each, all 64 streams at once
    assert len(openai_server.completions) == 64


def test_subprocess_mode_prints_its_port_and_serves() -> None:
    with ServerProcess(tokens=3) as process:
        conn = http.client.HTTPConnection("127.0.0.1", process.port, timeout=5)
        events, error = read_events(post(conn, chat_body()))
    assert error is None and events[-1] == "[DONE]"
    assert content_of(events) == "".join(generated_words(3))


# ---- real DSPy ------------------------------------------------------------------------------------

dspy = pytest.importorskip("dspy")
from dspy.streaming import StreamListener, StreamResponse  # noqa: E402
from dspy.utils.exceptions import (  # noqa: E402
    LMAuthError,
    LMInvalidRequestError,
    LMRateLimitError,
    LMServerError,
    LMStreamAssemblyError,
    LMTransportError,
    LMUnexpectedError,
    LMUnsupportedModelError,
    is_retryable_lm_error,
)


async def stream_program(program: Any, lm: Any, fields: list[str]) -> tuple[dict[str, list[str]], Any]:
    """Consume one streamify run to the end inside one task: chunks per field, and the Prediction."""

    async def consume() -> tuple[dict[str, list[str]], Any]:
        listeners = [StreamListener(signature_field_name=name) for name in fields]
        stream = dspy.streamify(program, stream_listeners=listeners, is_async_program=True)
        chunks: dict[str, list[str]] = {name: [] for name in fields}
        prediction = None
        with dspy.context(lm=lm):
            async for item in stream(question="What is streaming?"):
                if isinstance(item, StreamResponse):
                    chunks[item.signature_field_name].append(item.chunk)
                elif isinstance(item, dspy.Prediction):
                    prediction = item
        return chunks, prediction

    return await asyncio.create_task(consume())


@pytest.mark.parametrize(
    "behaviour",
    [
        Behaviour(tokens=8),
        Behaviour(tokens=8, split_markers=True),
        Behaviour(text="[bold red]x[/] \x1b[2J done"),
    ],
    ids=["default", "split-markers", "markup"],
)
async def test_dspy_predict_streams_the_answer(
    openai_server: OpenAIServer, openai_lm: Any, behaviour
) -> None:
    openai_server.default = behaviour
    chunks, prediction = await stream_program(dspy.Predict("question -> answer"), openai_lm, ["answer"])
    assert prediction is not None
    assert "".join(chunks["answer"]) == prediction.answer
    expected = behaviour.text if behaviour.text is not None else "".join(generated_words(8))
    assert prediction.answer == expected
    assert len([c for c in chunks["answer"] if c]) >= 3  # it streamed, not one lump
    record = openai_server.completions[-1]
    assert record.path == "/v1/chat/completions" and record.json["stream"] is True
    assert record.headers["authorization"] == f"Bearer {TEST_API_KEY}"


async def test_dspy_chain_of_thought_streams_reasoning_and_answer(
    openai_server: OpenAIServer, openai_lm
) -> None:
    openai_server.default = Behaviour(tokens=6, fields={"reasoning": "First think, then answer."})
    program = dspy.ChainOfThought("question -> answer")
    chunks, prediction = await stream_program(program, openai_lm, ["reasoning", "answer"])
    assert "".join(chunks["reasoning"]) == prediction.reasoning == "First think, then answer."
    assert "".join(chunks["answer"]) == prediction.answer == "".join(generated_words(6))


FAULTS = [
    # behaviour, DSPy error class, .status, .retry_after, retryable by dspy.utils.exceptions
    (Behaviour(status=429, retry_after=2), LMRateLimitError, 429, 2.0, True),
    (Behaviour(status=500), LMServerError, 500, None, True),
    (Behaviour(status=503), LMServerError, 503, None, True),
    (Behaviour(status=401), LMAuthError, 401, None, False),
    (Behaviour(status=400), LMInvalidRequestError, 400, None, False),
    (Behaviour(status=404), LMUnsupportedModelError, 404, None, False),
    (Behaviour(status=422), LMInvalidRequestError, 422, None, False),
    (Behaviour(cut_after=3), LMTransportError, None, None, True),
    (Behaviour(stall_after=3), LMTransportError, None, None, True),
    (Behaviour(truncate_after=3), LMStreamAssemblyError, None, None, False),
    (Behaviour(malformed_after=3), LMUnexpectedError, None, None, False),
    (Behaviour(error_event_after=3), LMServerError, None, None, True),
]


@pytest.mark.parametrize(
    ("behaviour", "error_class", "status", "retry_after", "retryable"),
    FAULTS,
    ids=[
        "429",
        "500",
        "503",
        "401",
        "400",
        "404",
        "422",
        "cut",
        "stall",
        "truncate",
        "malformed",
        "error-event",
    ],
)
async def test_dspy_error_contract(
    openai_server: OpenAIServer, openai_lm_kwargs, behaviour, error_class, status, retry_after, retryable
) -> None:
    """Which DSPy exception each fault becomes on DSPy's native (lm15) engine, with num_retries=0."""
    lm = dspy.LM(**openai_lm_kwargs, cache=False, num_retries=0, timeout=0.5)
    openai_server.script(behaviour)
    with pytest.raises(error_class) as caught:
        await stream_program(dspy.Predict("question -> answer"), lm, ["answer"])
    error = caught.value
    assert type(error) is error_class
    assert (error.status, error.retry_after) == (status, retry_after)
    assert is_retryable_lm_error(error) is retryable
    if behaviour.stall_after is not None:
        assert "read timed out" in error.message
    if behaviour.cut_after is not None:
        assert "connection closed" in error.message
    assert len(openai_server.completions) == 1


async def test_dspy_model_name_spec_from_the_lm(openai_server: OpenAIServer) -> None:
    lm = dspy.LM(**openai_server.lm_kwargs("fault:429:retry_after=1:times=1"), cache=False, num_retries=0)
    with pytest.raises(LMRateLimitError):
        await stream_program(dspy.Predict("question -> answer"), lm, ["answer"])
    _, prediction = await stream_program(dspy.Predict("question -> answer"), lm, ["answer"])
    assert prediction.answer == "".join(generated_words(20))
    assert [r.model for r in openai_server.completions] == ["fault:429:retry_after=1:times=1"] * 2


async def test_dspy_retries_by_itself_unless_num_retries_is_zero(openai_server: OpenAIServer) -> None:
    """With num_retries > 0, DSPy retries retryable errors before the first token (honouring Retry-After)."""
    openai_server.script(Behaviour(status=429, retry_after=0.05), Behaviour(status=429, retry_after=0.05))
    lm = dspy.LM(**openai_server.lm_kwargs(), cache=False, num_retries=2)
    _, prediction = await stream_program(dspy.Predict("question -> answer"), lm, ["answer"])
    assert prediction.answer
    assert [r.status for r in openai_server.completions] == [429, 429, 200]


async def test_cancelling_the_stream_closes_the_http_request(openai_server: OpenAIServer, openai_lm) -> None:
    openai_server.default = Behaviour(tokens=200, tokens_per_s=100)
    first_chunk = asyncio.Event()

    async def consume() -> None:
        listeners = [StreamListener(signature_field_name="answer")]
        stream = dspy.streamify(
            dspy.Predict("question -> answer"), stream_listeners=listeners, is_async_program=True
        )
        with dspy.context(lm=openai_lm):
            async for item in stream(question="Long answer?"):
                if isinstance(item, StreamResponse):
                    first_chunk.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_chunk.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await openai_server.until(lambda: openai_server.disconnects == 1, timeout=2)
    record = openai_server.completions[-1]
    assert record.disconnected and record.tokens_sent < 200
