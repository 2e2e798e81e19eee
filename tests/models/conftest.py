"""Fixtures for the model tests: the real embedded model, in-process and behind a llama.cpp server."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
import pytest

from tui.config import Settings
from tui.models.lm_factory import build_lm, make_stream_listeners
from tui.models.local_engine import GENERATION_THREADS, ModelState, embedded_model_path, watch_model_state

SERVER_START_TIMEOUT_S = 60


@dataclass
class StreamResult:
    """What one streamed question produced, as a consumer saw it."""

    chunks: list[tuple[str, str]] = field(default_factory=list)
    prediction: Any = None
    first_chunk_s: float | None = None
    states: list[ModelState] = field(default_factory=list)

    def text(self, field_name: str) -> str:
        return "".join(text for name, text in self.chunks if name == field_name)

    @property
    def field_order(self) -> list[str]:
        order: list[str] = []
        for name, _ in self.chunks:
            if not order or order[-1] != name:
                order.append(name)
        return order


async def _stream_question(
    program: dspy.Module,
    lm: dspy.LM,
    adapter: dspy.Adapter,
    question: str,
    *,
    on_chunk: Any = None,
) -> StreamResult:
    """Stream one question through DSPy's real streaming path, consumed in the calling task."""
    result = StreamResult()
    stream = dspy.streamify(
        program, stream_listeners=make_stream_listeners(program, adapter), is_async_program=True
    )
    started = time.perf_counter()
    with dspy.context(lm=lm, adapter=adapter), watch_model_state(result.states.append):
        async for value in stream(question=question):
            if isinstance(value, dspy.streaming.StreamResponse):
                if result.first_chunk_s is None:
                    result.first_chunk_s = time.perf_counter() - started
                result.chunks.append((value.signature_field_name, value.chunk))
                if on_chunk is not None:
                    on_chunk(result)
            elif isinstance(value, dspy.Prediction):
                result.prediction = value
    return result


def _program_for(kind: str) -> dspy.Module:
    if kind == "predict":
        return dspy.Predict("question -> answer")
    return dspy.ChainOfThought("question -> answer")


@pytest.fixture
def stream_question() -> Any:
    """`await stream_question(program, lm, adapter, question, on_chunk=None) -> StreamResult`."""
    return _stream_question


@pytest.fixture
def program_for() -> Any:
    """`program_for("predict" | "cot")`: a fresh DSPy program of that kind."""
    return _program_for


@pytest.fixture(scope="session")
def embedded_gguf() -> Path:
    return embedded_model_path()


@pytest.fixture(scope="session")
def local_lm() -> dspy.LM:
    """The embedded model, greedy, answers cut at 48 tokens a field to keep the suite quick."""
    return build_lm(Settings(model="local", temperature=0.0, max_tokens=48))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_serving(process: subprocess.Popen[bytes], base_url: str) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"llama_cpp.server exited with {process.returncode}: {error[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError(f"llama_cpp.server did not answer within {SERVER_START_TIMEOUT_S} s")


@pytest.fixture(scope="session")
def llama_server(embedded_gguf: Path) -> Iterator[str]:
    """`python -m llama_cpp.server` serving the embedded model on a free loopback port; its /v1 URL."""
    port = _free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(embedded_gguf),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", "2048",
        "--n_threads", str(GENERATION_THREADS),
        "--n_threads_batch", str(GENERATION_THREADS),
        "--verbose", "False",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_serving(process, base_url)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def remote_lm(llama_server: str) -> dspy.LM:
    return dspy.LM(
        "openai/smollm2", api_base=llama_server, api_key="x", cache=False, num_retries=0, temperature=0.0,
        max_tokens=16,
    )  # fmt: skip


async def gather_in_tasks(*coroutines: Any) -> list[Any]:
    """Each coroutine in its own task, as the dashboard runs concurrent streams."""
    return list(await asyncio.gather(*(asyncio.create_task(coroutine) for coroutine in coroutines)))
