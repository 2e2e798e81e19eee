"""Ctrl+C in the dashboard: the terminal is in raw mode, so it arrives as a key, not as SIGINT.

Either way it does what Ctrl+C does in headless mode: every stream in every worker cancelled,
partial answers kept in the report and history, exit code 130, no process left behind.
Real processes on a real pty.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from tests.support.openai_server import Behaviour
from tests.support.terminal import TerminalProcess
from tests.test_cli import ROOT
from tests.test_workers import alive, worker_pids

CTRL_C = b"\x03"
WORKERS = pytest.mark.parametrize("workers", [None, "0"], ids=["worker processes", "--workers 0"])


def _dashboard(server, tmp_path: Path, *args: str, workers: str | None = None) -> TerminalProcess:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    command = [sys.executable, "-m", "tui", "--model", "openai/test-model", "--api-base", server.base_url]
    if workers is not None:
        command += ["--workers", workers]
    return TerminalProcess([*command, *args], env=env, cwd=ROOT)


def _streaming(server, count: int) -> bool:
    return sum(request.tokens_sent > 5 for request in server.requests) >= count


def _history(tmp_path: Path) -> list[str]:
    db = sqlite3.connect(tmp_path / "data" / "dspy-stream" / "history.sqlite3")
    try:
        return [status for (status,) in db.execute("SELECT status FROM runs")]
    finally:
        db.close()


@WORKERS
@pytest.mark.parametrize("how", ["key", "SIGINT", "key twice"])
def test_ctrl_c_cancels_every_stream_keeps_the_partial_answers_and_quits(
    openai_server, tmp_path, workers, how
):
    openai_server.reset(Behaviour(tokens=2000, tokens_per_s=40))
    report = tmp_path / "r.json"
    with _dashboard(openai_server, tmp_path, "--report", str(report), "one", "two", workers=workers) as term:
        assert openai_server.wait_for(lambda: _streaming(openai_server, 2), timeout=60), "two streaming"
        children = worker_pids(term.pid)
        if how == "SIGINT":
            os.kill(term.pid, signal.SIGINT)
        else:
            term.send(CTRL_C * (2 if how == "key twice" else 1))
        assert term.wait(20) == 130, term.output[-2000:]
        gone_by = time.monotonic() + 2.0
        while any(alive(pid) for pid in children) and time.monotonic() < gone_by:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in children), "a worker outlived the front by more than 2 s"
    assert b"Traceback" not in term.output
    figures = json.loads(report.read_text())
    assert figures["num_prompts"] == 2 and figures["completed"] == 0
    assert all(len(text) > 0 for text in figures["generated_texts"]), "the partial answers are kept"
    assert _history(tmp_path) == ["interrupted"]


def test_ctrl_c_over_a_selection_in_the_question_box_copies_it_and_quits_nothing(openai_server, tmp_path):
    with _dashboard(openai_server, tmp_path) as term:
        term.wait_for(lambda shown: b"No streams yet" in shown, timeout=60, what="the idle dashboard")
        term.send(b"hello there")
        term.wait_for(lambda shown: b"hello there" in shown, what="the typed question")
        shown = len(term.output)
        term.send(b"\x1b[1;2H")  # Shift+Home: select what was typed
        # A key goes to the box through its own queue, after the app's bindings saw the next one.
        term.wait_for(lambda out: b"hello there" in out[shown:], what="the selection drawn")
        term.send(CTRL_C)
        copied = b"\x1b]52;c;" + base64.b64encode(b"hello there")
        term.wait_for(lambda out: copied in out, what="the selection copied (OSC 52)")
        assert term.process.poll() is None, "Ctrl+C over a selection quit the dashboard"
        shown = len(term.output)
        term.send(b"\x1b[F")  # End: nothing selected now, so Ctrl+C quits
        term.wait_for(lambda out: b"hello there" in out[shown:], what="the selection gone")
        term.send(CTRL_C)
        assert term.wait(20) == 130, term.output[-2000:]
    assert not openai_server.completions


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0]


def test_ctrl_z_stops_the_dashboard_and_its_streams_finish_once_it_goes_on(openai_server, tmp_path):
    """Raw mode makes Ctrl+Z a key: bound to job control, it stops the front (the terminal given
    back), the workers' streams wait on their unread events, and SIGCONT (`fg`) carries on."""
    openai_server.reset(Behaviour(tokens=60, tokens_per_s=30))
    report = tmp_path / "r.json"
    with _dashboard(openai_server, tmp_path, "--exit-when-done", "--report", str(report), "one") as term:
        assert openai_server.wait_for(lambda: _streaming(openai_server, 1), timeout=60), "streaming"
        term.send(b"\x1a")
        deadline = time.monotonic() + 10
        while _state(term.pid) != "T" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _state(term.pid) == "T", "Ctrl+Z stopped the dashboard"
        assert b"\x1b[?1049l" in term.output, "the terminal was given back to the shell"
        os.kill(term.pid, signal.SIGCONT)
        assert term.wait(60) == 0, term.output[-2000:]
    figures = json.loads(report.read_text())
    assert figures["completed"] == 1 and figures["total_output_tokens"] == 60
