"""An idle dashboard (no stream, waiting for a question) whose terminal goes away still ends.

Nothing is written while it is idle, so only the input side can tell: a hung-up terminal reads
as end of input, at once and for ever. Real processes on a real pty, as a closed window or a
killed tmux leaves them.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.terminal import TerminalProcess
from tests.test_cli import ROOT

ENDS_WITHIN_S = 10.0  # it ends in well under a second; a spinning one never does
SPARE_CPU_S = 0.25  # its CPU time while it ends: ~0.03 s; reading in a loop, ~0.5 s
WORKERS = pytest.mark.parametrize("workers", [None, "0"], ids=["worker processes", "--workers 0"])


def _until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def _idle_dashboard(server, tmp_path: Path, *args: str, workers: str | None = None) -> TerminalProcess:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    command = [sys.executable, "-m", "tui", "--model", "openai/test-model", "--api-base", server.base_url]
    if workers is not None:
        command += ["--workers", workers]
    term = TerminalProcess([*command, *args], env=env, cwd=ROOT)
    # The program loaded, no question given: it waits for one to be typed.
    term.wait_for(lambda shown: b"No streams yet" in shown, timeout=60, what="the idle dashboard")
    return term


def _cpu_s(pid: int) -> float:
    """User and system time of a running process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _history(tmp_path: Path) -> list[str]:
    db = sqlite3.connect(tmp_path / "data" / "dspy-stream" / "history.sqlite3")
    try:
        return [status for (status,) in db.execute("SELECT status FROM runs")]
    finally:
        db.close()


def _ends(term: TerminalProcess) -> float:
    """Seconds until the process ends."""
    start = time.monotonic()
    _until(lambda: term.process.poll() is not None, ENDS_WITHIN_S, "the dashboard to end")
    return time.monotonic() - start


@WORKERS
@pytest.mark.parametrize("hang_up", [False, True], ids=["terminal gone", "terminal gone, then SIGHUP"])
def test_an_idle_dashboard_whose_terminal_goes_away_ends_and_keeps_its_report(
    openai_server, tmp_path, workers, hang_up
):
    report = tmp_path / "r.json"
    with _idle_dashboard(openai_server, tmp_path, "--report", str(report), workers=workers) as term:
        term.close_terminal()
        if hang_up:
            term.hang_up()
        _ends(term)
        assert term.wait(5) == (128 + signal.SIGHUP if hang_up else 130)
    assert json.loads(report.read_text())["num_prompts"] == 0
    assert _history(tmp_path) == ["interrupted"]
    assert not openai_server.completions


def test_a_hung_up_terminal_is_not_read_in_a_loop_while_the_dashboard_ends(openai_server, tmp_path):
    """Textual reads again at once: a core spun until some write fails (~0.5 s of CPU)."""
    with _idle_dashboard(openai_server, tmp_path) as term:
        before = _cpu_s(term.pid)
        term.close_terminal()
        samples = [before]

        def ended() -> bool:
            if term.process.poll() is not None:
                return True
            samples.append(_cpu_s(term.pid))  # not reaped yet: still readable once it has exited
            return False

        _until(ended, ENDS_WITHIN_S, "the dashboard to end")
        assert term.wait(5) == 130
    spent = samples[-1] - before
    assert spent < SPARE_CPU_S, f"{spent:.2f} s of CPU while it ended"


def test_a_sigcont_without_a_suspend_starts_no_second_application_mode(openai_server, tmp_path):
    """Textual restarts its application mode on any SIGCONT: a second writer and input thread."""
    with _idle_dashboard(openai_server, tmp_path) as term:
        os.kill(term.pid, signal.SIGCONT)
        term.send(b"\x11")  # Ctrl+Q, handled after the signal: nothing is live, so it quits at once
        assert term.wait(30) == 0, term.output[-2000:]
    assert term.output.count(b"\x1b[?1049h") == 1, "the alternate screen was entered twice"
