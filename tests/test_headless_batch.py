"""Huge batches headless: streams start as questions are read, in flat memory, and stop at once.

Real processes; memory is the process's resident set (/proc/PID/status VmRSS), times are
waited for as conditions with deadlines.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.support.openai_server import Behaviour
from tests.test_cli import on
from tests.test_robustness import _env, _start, _wait_until

# A process of this project with DSPy loaded is ~250 MB; a built list of 100M questions is GBs.
MOST_RSS_MB = 600


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def first_request_after(server, started: float, proc, what: str, timeout: float = 60.0) -> float:
    _wait_until(lambda: bool(server.completions) or proc.poll() is not None, timeout, what)
    assert server.completions, f"{what}: exited {proc.poll()} before streaming"
    return server.completions[0].received_at - started


def _startup(server, tmp_path: Path, args: list[str]) -> float:
    """Seconds from process start to the first request for one question: importing DSPy and such."""
    started = time.monotonic()
    proc = _start([*on(server), *args, "one question"], _env(tmp_path))
    seconds = first_request_after(server, started, proc, "the reference run's request")
    proc.communicate(timeout=60)
    server.reset(server.default)
    return seconds


def _huge_batch(server, tmp_path: Path, args: list[str]) -> None:
    server.default = Behaviour(tokens=200, token_delay=0.02)
    reference = _startup(server, tmp_path / "reference", [])
    report = tmp_path / "r.json"
    started = time.monotonic()
    proc = _start([*on(server), "--concurrency", "4", "--report", str(report), *args], _env(tmp_path))
    try:
        waited = first_request_after(server, started, proc, "the first stream", timeout=reference + 5)
        assert waited < reference + 1.5, (
            f"first stream after {waited:.1f} s (one question: {reference:.1f} s)"
        )
        _wait_until(lambda: len(server.completions) >= 4, what="four streams live")
        first = rss_mb(proc.pid)
        _wait_until(lambda: sum(r.finished_at is not None for r in server.completions) >= 8, what="8 ended")
        assert rss_mb(proc.pid) < MOST_RSS_MB and rss_mb(proc.pid) - first < 100, (first, rss_mb(proc.pid))
        # The next four asked, so four are live when Ctrl+C comes: they start as slots free.
        _wait_until(lambda: len(server.completions) >= 12, what="the next four streams live")
        proc.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert took < 1.5, f"{took:.2f} s from Ctrl+C to exit"
    data = json.loads(report.read_text())
    asked = len(server.completions)
    assert asked <= data["num_prompts"] <= asked + 4, (asked, data["num_prompts"])
    assert data["completed"] >= 4 and "cancelled" in data["states"], data["states"]
    assert "Traceback" not in err


def test_repeat_a_hundred_million_times_streams_at_once_in_flat_memory(openai_server, tmp_path):
    _huge_batch(openai_server, tmp_path, ["--repeat", "100000000", "the same question"])


def test_a_100k_line_questions_file_streams_at_once_in_flat_memory(openai_server, tmp_path):
    questions = tmp_path / "qs.txt"
    questions.write_text("".join(f"question number {i}\n" for i in range(100_000)))
    _huge_batch(openai_server, tmp_path, ["--questions", str(questions)])


def test_a_too_long_line_midway_stops_asking_and_names_file_and_line(openai_server, tmp_path):
    openai_server.default = Behaviour(text="fine")
    questions = tmp_path / "qs.txt"
    questions.write_text("first\nsecond\nthird\n" + "x" * 70_000 + "\nnever asked\n")
    proc = _start([*on(openai_server), "--questions", str(questions)], _env(tmp_path))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert f"{questions}:4: line longer than 64 KiB" in err and "Traceback" not in err
    assert len(openai_server.completions) == 3 and "never asked" not in out


def test_questions_from_a_slow_pipe_do_not_hold_up_the_live_streams(openai_server, tmp_path):
    import subprocess
    import threading

    openai_server.default = Behaviour(text="answered")
    proc = _start([*on(openai_server), "--questions", "/dev/stdin"], _env(tmp_path), stdin=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    errors: list[str] = []
    threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True).start()
    proc.stdin.write("one\ntwo\n")
    proc.stdin.flush()
    try:
        _wait_until(
            lambda: sum("[done]" in line for line in errors) == 2, what="two answers while the pipe waits"
        )
        proc.stdin.write("three\n")
        proc.stdin.close()
        out = proc.stdout.read() if proc.stdout else ""
        assert proc.wait(60) == 0, errors
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "[3] answered" in out.splitlines() and len(openai_server.completions) == 3
