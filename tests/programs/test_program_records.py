"""What a multi-field program leaves behind: the report, the history and the saved transcript."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.programs.conftest import SAMPLES
from tests.streaming.conftest import server_settings
from tests.support.openai_server import Behaviour, OpenAIServer
from tui.history import RunHistory
from tui.report import build_report
from tui.streaming.session import StreamSession
from tui.transcript import save_session

INPUTS = {"context": "Rust is a language.", "question": "What is Rust?"}


def finished_session(
    server: OpenAIServer, history: RunHistory | None = None, **changes: object
) -> StreamSession:
    session = StreamSession(server_settings(server, **changes))

    async def go() -> None:
        recorder = history.begin_run(session, mode="simple", questions=["q"]) if history else None
        run = session.new_run(INPUTS)
        await run.wait()
        if recorder is not None:
            recorder.finish()

    asyncio.run(go())
    return session


def test_the_report_keeps_fields_prediction_usage_and_ttfo(openai_server: OpenAIServer) -> None:
    openai_server.default = Behaviour(tokens=5)
    session = finished_session(openai_server, program=f"{SAMPLES}:DraftThenPolish")
    report = build_report(session)
    run = session.runs[0]
    assert report["field_texts"][0] == dict(run.record.current)
    assert set(report["field_texts"][0]) == {"reasoning", "draft.answer", "polish.answer"}
    prediction = report["predictions"][0]
    assert isinstance(prediction["confidence"], float)  # a value, not its text
    assert prediction["answer"] == run.record.current["polish.answer"].strip()
    served = openai_server.completions
    assert report["provider_output_lens"] == [sum(r.tokens_sent for r in served)]
    assert report["input_lens"][0] > 0 and report["total_input_tokens"] == report["input_lens"][0]
    assert report["cost_usd"] == [None] and report["total_cost_usd"] is None
    assert report["ttfos"][0] > report["ttfts"][0]
    assert report["mean_ttfo_ms"] == report["ttfos"][0] * 1000
    assert report["inputs"] == [INPUTS]
    json.dumps(report)


def test_tool_calls_are_kept_in_order(openai_server: OpenAIServer, tmp_path: Path) -> None:
    history = RunHistory(tmp_path / "h.sqlite")
    session = StreamSession(server_settings(openai_server, program=f"{SAMPLES}:agent"))

    async def go() -> None:
        recorder = history.begin_run(session, mode="simple", questions=["Weather?"])
        run = session.new_run("Weather?")
        await run.wait()
        recorder.finish()

    asyncio.run(go())
    report = build_report(session)
    assert [c.split("(")[0] for c in report["tool_calls"][0]] == ["weather", "add"]
    stored = history.load_run(history.run_ids()[-1]).streams[0].figures
    assert stored is not None
    assert stored.tool_calls == report["tool_calls"][0]
    assert stored.prediction == report["predictions"][0]
    assert stored.field_texts == report["field_texts"][0]
    assert stored.input_len == report["input_lens"][0]
    assert stored.ttfo == report["ttfos"][0]
    history.close()


def test_the_transcript_shows_every_field_and_the_prediction(
    openai_server: OpenAIServer, tmp_path: Path
) -> None:
    session = finished_session(openai_server, program=f"{SAMPLES}:DraftThenPolish")
    saved = save_session(tmp_path / "t.json", session, session.settings)
    stream = json.loads(saved.read_text())["streams"][0]
    assert set(stream["fields"]) == {"reasoning", "draft.answer", "polish.answer"}
    assert stream["inputs"] == INPUTS
    assert isinstance(stream["prediction"]["confidence"], float)
    markdown = save_session(tmp_path / "t.md", session, session.settings).read_text()
    assert "**draft.answer**" in markdown and '"confidence"' in markdown
