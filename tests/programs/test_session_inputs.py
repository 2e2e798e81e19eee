"""A session knows its program before the first question, and asks for every input field."""

from __future__ import annotations

import pytest

from tests.programs.conftest import SAMPLES
from tests.streaming.conftest import server_settings
from tui.config import Settings
from tui.programs import ProgramError
from tui.streaming.session import EmptyQuestion, MissingInputs, StreamSession


def test_the_program_is_described_before_any_question() -> None:
    session = StreamSession(Settings(program=f"{SAMPLES}:DraftThenPolish"))
    info = session.program_info
    assert info.label == f"{SAMPLES}:DraftThenPolish"
    assert info.inputs == ("context", "question")
    assert [(f.key, f.streams) for f in info.outputs] == [
        ("reasoning", True), ("draft.answer", True), ("polish.answer", True), ("confidence", False),
    ]  # fmt: skip
    assert info.final_output.key == "polish.answer"


def test_a_bad_program_fails_when_the_session_checks_it() -> None:
    session = StreamSession(Settings(program=f"{SAMPLES}:nothing_here"))
    with pytest.raises(ProgramError, match="has no 'nothing_here'"):
        session.ensure_program()


def test_every_input_field_needs_a_value() -> None:
    session = StreamSession(Settings(program=f"{SAMPLES}:DraftThenPolish"))
    with pytest.raises(MissingInputs, match="needs question"):
        session.new_run({"context": "c", "question": "  "})
    with pytest.raises(MissingInputs, match="inputs are context, question"):
        session.new_run("just one text")  # one text cannot fill two fields
    with pytest.raises(EmptyQuestion):
        session.new_run({"context": "", "question": ""})
    assert not session.runs


def test_a_run_gets_one_value_per_field_and_is_shown_by_its_question(openai_server) -> None:
    session = StreamSession(server_settings(openai_server, program=f"{SAMPLES}:DraftThenPolish"))
    run = session.new_run({"question": "Why?", "context": "notes", "extra": "ignored"})
    assert run.job.program_inputs == {"context": "notes", "question": "Why?"}
    assert run.job.question == "Why?"
    run.cancel()
