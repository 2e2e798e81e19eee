"""Programs run through the real runner against the loopback server."""

from __future__ import annotations

from pathlib import Path

import dspy

from tests.streaming.conftest import server_lm, server_settings
from tests.support.openai_server import OpenAIServer
from tui.programs import load_program
from tui.streaming.events import StreamEvent
from tui.streaming.runner import StreamJob, StreamRun

HERE = Path(__file__).parent
SAMPLES = HERE / "sample_programs.py"
TOOLS = HERE / "sample_tools.py"


def program_run(server: OpenAIServer, inputs: dict[str, str], **changes: object) -> StreamRun:
    settings = server_settings(server, **changes)
    loaded = load_program(settings)
    question = list(inputs.values())[-1]
    return StreamRun(
        StreamJob(question, inputs=inputs),
        settings,
        server_lm(server),
        dspy.ChatAdapter(),
        program=loaded,
    )


async def collect(run: StreamRun) -> list[StreamEvent]:
    return [event async for event in run.events()]
