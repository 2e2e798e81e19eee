"""Several questions headless, as a user runs them: `docker compose logs` lines, --jsonl, --output.

Real `dspy-stream` processes against the loopback server; stdout read from a real pipe or pty
as it comes, so "a line reaches stdout while its stream still runs" is what is checked.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.support.openai_server import Behaviour
from tests.support.terminal import TerminalProcess
from tests.test_cli import ROOT, dspy_stream, on
from tests.test_robustness import _env, _history_runs, _start, _wait_until

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
THREE_LINES = "alpha beta\ngamma delta\nepsilon zeta"


class LineReader:
    """Reads a pipe in a thread, noting when each line arrived (time.monotonic, as the server)."""

    def __init__(self, pipe) -> None:
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        for line in pipe:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def text(self) -> list[str]:
        return [line for _, line in self.lines]

    def join(self) -> None:
        self._thread.join(30)


def stream_lines(lines: list[str], stream_id: int) -> list[str]:
    prefix = f"[{stream_id}] "
    return [line[len(prefix) :] for line in lines if line.startswith(prefix)]


def test_several_questions_stream_each_line_as_it_completes_after_its_tag(openai_server, tmp_path):
    openai_server.default = Behaviour(text=THREE_LINES, token_delay=0.3)
    proc = _start([*on(openai_server), "one", "two"], _env(tmp_path))
    reader = LineReader(proc.stdout)
    err = proc.stderr.read()
    proc.wait(60)
    reader.join()
    assert proc.returncode == 0, err
    lines = reader.text()
    assert all(line.startswith(("[1] ", "[2] ")) for line in lines), lines
    for number, question in ((1, "one"), (2, "two")):
        assert stream_lines(lines, number) == [f"Q: {question}", "alpha beta", "gamma delta", "epsilon zeta"]
    # The first line of each answer was on stdout while its stream was still being sent.
    for request in openai_server.completions:
        question = "one" if "one" in request.body.decode() else "two"
        number = 1 if question == "one" else 2
        first_line_at = next(at for at, line in reader.lines if line == f"[{number}] alpha beta")
        assert first_line_at < request.finished_at - 0.3, "a line waited for the end of its stream"
    assert "\x1b" not in "".join(lines), "colour on a pipe"
    assert re.search(r"^\[1\] \[done\]", err, re.M) and re.search(r"^\[2\] \[done\]", err, re.M), err


def test_aggregate_mode_prints_whole_lines_not_a_line_a_token(openai_server):
    openai_server.default = Behaviour(tokens=15, tokens_per_s=200)
    result = dspy_stream(*on(openai_server), "--mode", "aggregate", "one", "two")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for number in (1, 2):
        answer = stream_lines(lines, number)[1:]
        assert len(answer) == 1, lines
        assert len(answer[0].split()) == 15


@pytest.mark.parametrize("no_color", [False, True])
def test_tags_are_coloured_on_a_terminal_unless_no_color(openai_server, tmp_path, no_color):
    openai_server.default = Behaviour(text="coloured words")
    env = _env(tmp_path)
    if no_color:
        env["NO_COLOR"] = "1"
    with TerminalProcess(
        [sys.executable, "-m", "tui", *on(openai_server), "one", "two"], env=env, cwd=ROOT
    ) as term:
        assert term.wait(60) == 0, term.output
        shown = term.output
    if no_color:
        assert b"\x1b[3" not in shown and b"[1] coloured words" in shown, shown
    else:
        assert b"\x1b[36m[1]\x1b[0m coloured words" in shown, shown
        assert b"\x1b[33m[2]\x1b[0m coloured words" in shown, shown


def test_retries_are_tagged_on_stderr_and_the_answer_lines_stay_clean(openai_server, tmp_path):
    openai_server.default = Behaviour(text="answered in the end")
    openai_server.script(Behaviour(status=500))
    result = dspy_stream(*on(openai_server), "one", "two", env={"XDG_DATA_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\[[12]\] retry 1/3 in .* the answer restarts$", result.stderr, re.M), result.stderr
    assert "restarts" not in result.stdout and "500" not in result.stdout
    for number in (1, 2):
        assert stream_lines(result.stdout.splitlines(), number)[-1] == "answered in the end"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_writes_every_streams_partial_line(openai_server, tmp_path, signum):
    openai_server.default = Behaviour(text=" ".join(f"word{i}" for i in range(400)), token_delay=0.02)
    output = tmp_path / "answers.txt"
    proc = _start([*on(openai_server), "--output", str(output), "one", "two"], _env(tmp_path))
    _wait_until(
        lambda: (
            len(openai_server.completions) == 2 and all(r.tokens_sent > 20 for r in openai_server.completions)
        ),
        what="both streams well under way",
    )
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, err
    for number in (1, 2):
        answer = stream_lines(out.splitlines(), number)[1:]
        assert len(answer) == 1 and answer[0].startswith("word0 word1 word2"), out
    assert output.read_text() == out


def test_jsonl_is_one_flushed_record_an_event(openai_server, tmp_path):
    openai_server.default = Behaviour(text=THREE_LINES, token_delay=0.2)
    proc = _start([*on(openai_server), "--jsonl", "one", "two"], _env(tmp_path))
    reader = LineReader(proc.stdout)
    err = proc.stderr.read()
    proc.wait(60)
    reader.join()
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in reader.text()]
    for number, question in ((1, "one"), (2, "two")):
        mine = [r for r in records if r["stream"] == number]
        assert mine[0]["event"] == "start" and mine[0]["question"] == question
        assert mine[-1]["event"] == "done" and mine[-1]["reason"] == "stop"
        tokens = [r for r in mine if r["event"] == "token" and r["field"] == "answer"]
        assert "".join(r["text"] for r in tokens).strip() == THREE_LINES == mine[-1]["text"]
        times = [r["time"] for r in mine]
        assert times == sorted(times)
    first_token_at = next(at for at, line in reader.lines if '"event": "token"' in line)
    assert first_token_at < min(r.finished_at for r in openai_server.completions) - 0.5, "records waited"


def test_jsonl_after_ctrl_c_ends_every_stream_with_a_record(openai_server, tmp_path):
    openai_server.default = Behaviour(text=" ".join(f"word{i}" for i in range(400)), token_delay=0.02)
    proc = _start([*on(openai_server), "--jsonl", "one", "two", "three"], _env(tmp_path))
    _wait_until(lambda: sum(r.tokens_sent > 10 for r in openai_server.completions) == 3, what="three streams")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    records = [json.loads(line) for line in out.splitlines()]
    for number in (1, 2, 3):
        last = [r for r in records if r["stream"] == number][-1]
        assert last["event"] == "cancelled" and last["reason"] == "interrupted", last
        assert last["text"].startswith("word0 word1")


def test_output_file_has_the_shape_of_stdout_without_colour(openai_server, tmp_path):
    openai_server.default = Behaviour(text=THREE_LINES)
    output = tmp_path / "answers.txt"
    command = [sys.executable, "-m", "tui", *on(openai_server), "--output", str(output), "one", "two"]
    with TerminalProcess(command, env=_env(tmp_path), cwd=ROOT, stderr=subprocess.DEVNULL) as term:
        assert term.wait(60) == 0, term.output
        shown = term.output
    written = output.read_text()
    assert "\x1b" not in written and written.endswith("\n")
    assert written.splitlines() == ANSI.sub(b"", shown).decode().replace("\r\n", "\n").splitlines()
    assert stream_lines(written.splitlines(), 2) == ["Q: two", "alpha beta", "gamma delta", "epsilon zeta"]


def test_one_question_still_streams_raw_tokens(openai_server):
    openai_server.default = Behaviour(text=THREE_LINES)
    result = dspy_stream(*on(openai_server), "just one")
    assert result.returncode == 0, result.stderr
    assert result.stdout == THREE_LINES + "\n"


def test_repeat_asks_again_as_new_tagged_streams_each_kept_in_the_history(openai_server, tmp_path):
    import sqlite3

    openai_server.default = Behaviour(text="short")
    result = dspy_stream(
        *on(openai_server), "--repeat", "3", "q", env={"XDG_DATA_HOME": str(tmp_path / "data")}
    )
    assert result.returncode == 0, result.stderr
    assert [status for _, status in _history_runs(tmp_path)] == ["finished"]
    for number in (1, 2, 3):
        assert stream_lines(result.stdout.splitlines(), number) == ["Q: q", "short"]
    db = sqlite3.connect(tmp_path / "data" / "dspy-stream" / "history.sqlite3")
    try:
        assert db.execute("SELECT stream_id, state FROM streams ORDER BY stream_id").fetchall() == [
            (1, "done"), (2, "done"), (3, "done"),
        ]  # fmt: skip
    finally:
        db.close()


def test_stage_notes_start_on_a_line_of_their_own_beside_one_streaming_answer(openai_server, tmp_path):
    # stdout and stderr on one terminal: a stage's note once ran onto the answer's last line.
    openai_server.default = Behaviour(text="drafted words here")
    program = "tests/programs/sample_programs.py:DraftThenPolish"
    result = subprocess.run(
        [sys.executable, "-m", "tui", *on(openai_server), "--program", program,
         "--input", "context=notes", "--input", "question=one question"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60, env=_env(tmp_path), cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    notes = [line for line in result.stdout.splitlines() if "✓" in line or "▸" in line]
    assert notes, result.stdout
    assert all(line.lstrip().startswith(("✓", "▸")) for line in notes), result.stdout


def test_a_streams_end_line_says_what_its_pane_says(openai_server, tmp_path):
    """One formatter (tui.streaming.status_line): the state, then the pane's figures, in its words."""
    openai_server.default = Behaviour(text="answered in the end")
    openai_server.script(Behaviour(status=500))
    result = dspy_stream(*on(openai_server), "one", "two", env={"XDG_DATA_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    ends = [line for line in result.stderr.splitlines() if "[done]" in line]
    assert len(ends) == 2, result.stderr
    figures = r"\d+ tok · (\u2013 tok/s|[\d.,]+ tok/s) · TTFT \d+\.\d\ds · in \d+ · out \d+ · \d+\.\d\ds"
    assert any(re.fullmatch(rf"\[\d\] \[done\] · {figures} · attempt 2/4", line) for line in ends), ends
    assert any(re.fullmatch(rf"\[\d\] \[done\] · {figures}", line) for line in ends), ends
