"""Typing fast in a real terminal: the dashboard runs in tmux and tmux types the keys.

tmux hands the keys to the app in one burst, as a terminal does for a fast typist or a
script; each Enter must ask exactly what was typed before it. The saved report lists the
questions the streams asked.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.openai_server import Behaviour, OpenAIServer

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    """A tmux server of its own (its own socket), one window running `command`."""

    def __init__(self, command: str, size: tuple[int, int] = (120, 36)) -> None:
        self.socket = f"dspy-stream-test-{os.getpid()}-{time.monotonic_ns()}"
        width, height = size
        self.run("new-session", "-d", "-x", str(width), "-y", str(height), command)

    def run(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10, check=True
        )
        return result.stdout

    def screen(self) -> str:
        try:
            return self.run("capture-pane", "-p", "-t", "0")
        except subprocess.CalledProcessError:  # the window has closed: the app exited
            return ""

    def alive(self) -> bool:
        try:
            self.run("has-session")
        except subprocess.CalledProcessError:
            return False
        return True

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, screen: Callable[[], str] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            shown = screen() if screen is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{shown}")
        time.sleep(0.1)


def test_questions_typed_fast_in_a_terminal_are_asked_one_by_one(openai_server: OpenAIServer, tmp_path):
    openai_server.reset(Behaviour(tokens=4))
    report = tmp_path / "run.json"
    env = {k: v for k, v in os.environ.items() if k.startswith(("XDG_", "DSPY_CACHEDIR", "LITELLM"))}
    env |= {"PYTHONPATH": str(ROOT), "TERM": "xterm-256color"}
    app = [
        sys.executable, "-m", "tui", "--model", "openai/test-model",
        "--api-base", openai_server.base_url, "--report", str(report),
    ]  # fmt: skip
    assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())
    # Textual draws on stderr: it stays on the terminal.
    command = f"cd {shlex.quote(str(ROOT))} && env {assignments} {shlex.join(app)}"
    tmux = Tmux(command)
    try:
        wait_for(lambda: "Ask a question" in tmux.screen(), 60, "the dashboard")
        tmux.run("send-keys", "-t", "0", "one", "Enter", "two", "Enter", "three", "Enter")
        ended = ("3 done", "3✓")  # the header's long or short form, whichever fits
        wait_for(lambda: any(e in tmux.screen() for e in ended), 60, "three streams to end", tmux.screen)
        tmux.run("send-keys", "-t", "0", "C-q")
        wait_for(lambda: not tmux.alive() or report.exists(), 30, "the app to quit")
        wait_for(report.exists, 10, "the report")
    finally:
        tmux.close()
    assert json.loads(report.read_text())["questions"] == ["one", "two", "three"]
