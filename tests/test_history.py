"""The run history: real streams into a real SQLite file in a temporary directory."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.conditions import until
from tests.support.openai_server import Behaviour, OpenAIServer
from tests.test_report import make_session
from tui.history import SCHEMA_VERSION, HistoryError, RunHistory, default_history_path
from tui.history_cli import history_main
from tui.streaming.session import StreamSession


def history_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = history_main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def recorded_run(history: RunHistory, session: StreamSession, questions: list[str]) -> int:
    """A whole run, written as the headless run writes it."""

    async def go() -> int:
        recorder = history.begin_run(session, mode="concurrent", questions=questions)
        runs = [session.new_run(q) for q in questions]
        await asyncio.gather(*(run.wait() for run in runs))
        recorder.finish()
        return recorder.run_id

    return asyncio.run(go())


def test_the_default_database_is_in_the_user_data_dir() -> None:
    # conftest points XDG_DATA_HOME at a temporary directory.
    assert default_history_path().is_relative_to(os.environ["XDG_DATA_HOME"])
    assert default_history_path().parent.name == "dspy-stream"


def test_a_run_is_stored_with_every_attempt_and_its_figures(
    openai_server: OpenAIServer, tmp_path: Path
) -> None:
    openai_server.default = Behaviour(tokens=8)
    openai_server.script(Behaviour(tokens=8), Behaviour(tokens=8, cut_after=5), Behaviour(tokens=8))
    session = make_session(openai_server, max_retries=1, slo="ttft=60s")
    with RunHistory(tmp_path / "history.sqlite3") as history:
        run_id = recorded_run(history, session, ["What is Rust?", "What is Go?"])
        stored = history.load_run(run_id)

    assert stored.entry.status == "finished"
    assert stored.entry.mode == "concurrent"
    assert stored.entry.states == {"done": 2}
    assert stored.settings["slo"] == "ttft=60s" and "sources" not in stored.settings
    first, second = stored.streams
    assert (first.question, first.answer) == ("What is Rust?", session.runs[0].record.text)
    assert [a.number for a in second.attempts] == [1, 2]
    cut, delivered = second.attempts
    assert cut.error and cut.text  # the partial answer of the attempt that broke off is kept
    assert delivered.text == second.answer == session.runs[1].record.text
    assert second.figures is not None and second.figures.attempts == 2
    assert len(second.figures.itls) == second.figures.output_len - 1
    figures = stored.figures()
    assert figures["completed"] == 2 and figures["total_retries"] == 1
    assert figures["request_goodput"] == pytest.approx(figures["request_throughput"])


async def test_an_interrupted_run_keeps_what_finished(openai_server: OpenAIServer, tmp_path: Path) -> None:
    openai_server.script(Behaviour(tokens=3), Behaviour(tokens=400, tokens_per_s=100))
    session = make_session(openai_server, concurrency=2)
    path = tmp_path / "history.sqlite3"
    history = RunHistory(path)
    questions = ["quick", "slow", "never asked"]
    recorder = history.begin_run(session, questions=questions)
    runs = [session.new_run(q) for q in questions[:2]]
    for run in runs:  # in order: the server answers the first request quickly
        run.start()
    await runs[0].wait()
    await openai_server.until(lambda: any(r.tokens_sent > 10 for r in openai_server.completions))

    def committed() -> bool:  # another connection sees the finished stream while the run goes on
        with RunHistory(path) as reader:
            return reader.load_run(recorder.run_id).streams[0].state == "done"

    await until(committed, what="the finished stream to be committed")
    with RunHistory(path) as reader:
        midway = reader.load_run(recorder.run_id)
    assert [s.state for s in midway.streams] == ["done", "pending", "pending"]
    assert midway.entry.status == "running"

    recorder.finish(interrupted=True)
    runs[1].cancel()
    await runs[1].wait()
    stored = history.load_run(recorder.run_id)
    history.close()
    assert stored.entry.status == "interrupted"
    assert [s.state for s in stored.streams] == ["done", "interrupted", "interrupted"]
    assert stored.streams[0].answer
    assert stored.streams[1].attempts[0].text  # the partial answer of the stream cut short
    assert stored.streams[2].attempts == []
    assert stored.figures()["completed"] == 1


def test_a_run_left_by_a_dead_process_is_closed_as_interrupted(
    openai_server: OpenAIServer, tmp_path: Path
) -> None:
    path = tmp_path / "history.sqlite3"
    session = make_session(openai_server)
    with RunHistory(path) as history:
        run_id = history.begin_run(session, questions=["a", "b"]).run_id
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead = int(finished.stdout)
    with sqlite3.connect(path) as db:
        owner = db.execute("SELECT owner FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
        db.execute("UPDATE runs SET owner = ? WHERE id = ?", (f"{owner.rpartition(':')[0]}:{dead}", run_id))
    with RunHistory(path) as history:
        stored = history.load_run(run_id)
    assert stored.entry.status == "interrupted"
    assert stored.entry.states == {"interrupted": 2}


# -- versions -----------------------------------------------------------------------------------------

V1_SCHEMA = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT NOT NULL, finished_at TEXT,
    status TEXT NOT NULL, model TEXT NOT NULL, mode TEXT, settings TEXT NOT NULL, summary TEXT
);
CREATE TABLE streams (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, stream_id INTEGER NOT NULL,
    question TEXT NOT NULL, state TEXT NOT NULL, answer TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '', figures TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (run_id, stream_id)
);
PRAGMA user_version = 1;
"""


def make_v1_database(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    settings = {"model": "openai/gpt-4o-mini", "concurrency": 4, "slo": None}
    summary = {"duration": 2.0, "completed": 1, "failed": 1, "mean_ttft_ms": 120.0}
    db.execute(
        "INSERT INTO runs VALUES (7, '2025-01-02T03:04:05+00:00', '2025-01-02T03:04:07+00:00',"
        " 'finished', 'openai/gpt-4o-mini', 'concurrent', ?, ?)",
        (json.dumps(settings), json.dumps(summary)),
    )
    db.execute("INSERT INTO streams VALUES (7, 1, 'What is Rust?', 'done', 'A language.', '', '{}')")
    db.execute("INSERT INTO streams VALUES (7, 2, 'What is Go?', 'failed', '', 'rate limited (429)', '{}')")
    db.commit()
    db.close()


def test_a_version_1_database_is_migrated_not_replaced(openai_server: OpenAIServer, tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    make_v1_database(path)
    with RunHistory(path) as history:
        assert history.schema_version == SCHEMA_VERSION == 2
        old = history.load_run(7)
        assert old.entry.status == "finished" and old.entry.model == "openai/gpt-4o-mini"
        assert [(s.question, s.state, s.answer) for s in old.streams] == [
            ("What is Rust?", "done", "A language."),
            ("What is Go?", "failed", ""),
        ]
        assert old.streams[0].attempts[0].fields == {"answer": "A language."}
        assert old.streams[1].attempts[0].error == "rate limited (429)"
        assert old.figures()["mean_ttft_ms"] == 120.0
        new_id = recorded_run(history, make_session(openai_server), ["What is Zig?"])
        assert new_id == 8
        assert [e.run_id for e in history.list_runs()] == [8, 7]

    code, out, _ = history_cli("show", "7", "--db", str(path))
    assert code == 0 and "A language." in out and "rate limited (429)" in out
    code, out, _ = history_cli("compare", "7", "8", "--db", str(path))
    assert code == 0 and "concurrency: 4 -> 1" in out


def test_a_database_from_a_newer_version_or_not_a_database_is_left_alone(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite3"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 99")
    before = newer.read_bytes()
    with pytest.raises(HistoryError, match="newer dspy-stream"):
        RunHistory(newer)
    assert newer.read_bytes() == before

    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database, but someone's notes" * 100)
    with pytest.raises(HistoryError, match="cannot be used"):
        RunHistory(garbage)
    assert garbage.read_bytes().startswith(b"this is not a database")


# -- the command --------------------------------------------------------------------------------------


def test_history_lists_shows_and_compares_runs(openai_server: OpenAIServer, tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    db = ("--db", str(path))
    code, out, _ = history_cli(*db)
    assert code == 0 and "no runs in the history yet" in out
    assert not path.exists()  # listing creates nothing

    with RunHistory(path) as history:
        first = recorded_run(history, make_session(openai_server, concurrency=1), ["q1", "q2"])
        second = recorded_run(history, make_session(openai_server, concurrency=2), ["q1", "q2"])

    code, out, _ = history_cli(*db)
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["RUN", "STARTED", "STATUS"]
    assert [line.split()[0] for line in lines[1:]] == [str(second), str(first)]
    assert "finished" in lines[1] and "openai/test-model" in lines[1]

    code, out, _ = history_cli("show", "last", *db)
    assert code == 0 and out.startswith(f"run {second} · finished")
    for expected in ("request_throughput (req/s)", "max_output_tokens_per_s", "ttft_ms", "Q: q2", "A:"):
        assert expected in out

    code, out, _ = history_cli("compare", "-2", "-1", *db)
    assert code == 0
    assert "concurrency: 1 -> 2" in out
    header = next(line for line in out.splitlines() if line.startswith("figure"))
    assert header.split() == ["figure", "run", str(first), "run", str(second), "change"]
    completed = next(line for line in out.splitlines() if line.startswith("completed "))
    assert completed.split() == ["completed", "2", "2", "="]
    assert "p99_e2el_ms" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("show", "99"), "no run 99 in the history"),
        (("show", "-5"), "goes back too far"),
        (("show", "yesterday"), "give a run number"),
        (("compare", "1"), "required"),
        (("frobnicate",), "invalid choice"),
    ],
)
def test_history_errors_are_one_line_and_exit_2(
    openai_server: OpenAIServer, tmp_path: Path, argv: tuple[str, ...], message: str
) -> None:
    path = tmp_path / "history.sqlite3"
    with RunHistory(path) as history:
        recorded_run(history, make_session(openai_server), ["q"])
    code, out, err = history_cli(*argv, "--db", str(path))
    assert code == 2 and out == ""
    assert err.startswith("dspy-stream: error: ") and message in err
    assert err.count("\n") == 1


async def test_an_interrupted_run_lists_the_tokens_it_streamed_and_no_mode_none(
    openai_server: OpenAIServer, tmp_path: Path
) -> None:
    openai_server.reset(Behaviour(tokens=400, tokens_per_s=200))
    session = make_session(openai_server)
    path = tmp_path / "history.sqlite3"
    history = RunHistory(path)
    recorder = history.begin_run(session, mode="interactive", questions=["slow"])
    run = session.new_run("slow")
    run.start()
    await openai_server.until(lambda: any(r.tokens_sent > 40 for r in openai_server.completions))
    recorder.finish(interrupted=True)
    streamed = run.metrics.tokens
    run.cancel()
    await run.wait()
    history.close()

    code, out, _ = history_cli("--db", str(path))
    row = out.splitlines()[1].split()
    assert code == 0 and "interrupted" in row
    assert streamed > 0 and str(streamed) in row, "the TOKENS column shows what the run streamed"
    code, out, _ = history_cli("show", "last", "--db", str(path))
    assert "mode = None" not in out and "mode = 'interactive'" in out
