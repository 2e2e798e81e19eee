"""A 500-question file at concurrency 16 through the real headless path: nothing is lost."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from pathlib import Path

import dspy

from tests.support.openai_server import Behaviour, OpenAIServer
from tui.config import Settings
from tui.headless import EXIT_OK, HeadlessRun
from tui.history import RunHistory
from tui.questions import read_questions
from tui.report import write_report
from tui.streaming.session import StreamSession

QUESTIONS = 500


def test_500_questions_at_concurrency_16_all_reach_the_report_and_the_history(
    openai_server: OpenAIServer, tmp_path: Path
) -> None:
    openai_server.default = Behaviour(tokens=4)
    questions_file = tmp_path / "questions.jsonl"
    questions_file.write_text(
        "".join(json.dumps({"id": i, "question": f"Question number {i}?"}) + "\n" for i in range(QUESTIONS)),
        encoding="utf-8",
    )
    questions = [q.text for q in read_questions(questions_file).questions]
    settings = Settings(
        model="openai/test-model",
        api_base=openai_server.base_url,
        concurrency=16,
        mode="concurrent",
        timeout=30,
    )
    lm = dspy.LM(**openai_server.lm_kwargs(), cache=False, num_retries=0)
    session = StreamSession(settings, lm=lm, adapter=dspy.ChatAdapter())
    stdout, stderr = io.StringIO(), io.StringIO()
    headless = HeadlessRun(settings, questions, "concurrent", stdout=stdout, stderr=stderr, session=session)

    started = time.monotonic()
    with RunHistory(tmp_path / "history.sqlite3") as history:
        recorder = history.begin_run(session, mode="concurrent", questions=questions)
        code = asyncio.run(headless.run())
        for run in session.runs:
            recorder.record_stream(run)
        recorder.finish()
        stored = history.load_run(recorder.run_id)
    write_report(tmp_path / "report.json", session)
    elapsed = time.monotonic() - started

    assert code == EXIT_OK, stderr.getvalue()[-2000:]
    assert len(openai_server.completions) == QUESTIONS
    answers = {run.job.question: run.record.text for run in session.runs}
    assert sorted(answers) == sorted(questions) and all(answers.values())

    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert (report["num_prompts"], report["completed"], report["failed"]) == (QUESTIONS, QUESTIONS, 0)
    assert report["questions"] == questions
    assert report["generated_texts"] == [answers[q] for q in questions]
    assert report["max_concurrency"] == 16
    assert report["max_queue_fill"] <= settings.buffer_size

    assert stored.entry.status == "finished"
    assert stored.entry.states == {"done": QUESTIONS}
    assert [s.question for s in stored.streams] == questions
    assert [s.answer for s in stored.streams] == [answers[q] for q in questions]
    assert stored.figures()["completed"] == QUESTIONS

    printed = stdout.getvalue()
    printed_lines = printed.splitlines()
    asked = [line for line in printed_lines if re.match(r"\[\d+\] Q: ", line)]
    assert sorted(asked) == sorted(f"[{run.job.stream_id}] Q: {run.job.question}" for run in session.runs)
    for run in session.runs:
        assert f"[{run.job.stream_id}] {run.record.text}" in printed_lines
    assert elapsed < 30, f"the batch took {elapsed:.1f} s"
