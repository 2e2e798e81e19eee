"""Streams for core tests: real DSPy, real HTTP, against the loopback server."""

from __future__ import annotations

from collections.abc import Callable

import dspy
import pytest

from tests.support.openai_server import OpenAIServer
from tui.config import Settings
from tui.streaming.events import StreamEvent
from tui.streaming.runner import StreamJob, StreamRun


def server_settings(server: OpenAIServer, **changes: object) -> Settings:
    base = Settings(model="openai/test-model", api_base=server.base_url, retry_delay=0.05, timeout=5.0)
    return base.replace(**changes)


def server_lm(server: OpenAIServer, model: str = "openai/test-model") -> dspy.LM:
    return dspy.LM(
        model, api_base=server.base_url, api_key="sk-test-not-a-real-key", cache=False, num_retries=0
    )


@pytest.fixture
def make_run(openai_server: OpenAIServer) -> Callable[..., StreamRun]:
    def make(
        question: str = "What is Rust?", *, model: str = "openai/test-model", **changes: object
    ) -> StreamRun:
        settings = server_settings(openai_server, model=model, **changes)
        return StreamRun(StreamJob(question), settings, server_lm(openai_server, model), dspy.ChatAdapter())

    return make


async def collect(run: StreamRun) -> list[StreamEvent]:
    return [event async for event in run.events()]
