"""`--record` and `dspy-stream replay`: real processes, a real server for the recording, none for
the replay."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.openai_server import Behaviour
from tests.test_cli import ROOT, on
from tests.test_robustness import _env

LATENCIES = ("ttfts", "tpots", "latencies", "start_times", "lm_ttfts", "ttfos", "queue_times")


def dspy_stream(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui", *args], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def recorded(openai_server, tmp_path) -> tuple[Path, dict, subprocess.CompletedProcess]:
    """Three questions one at a time: the first retried after a 503, the second refused (401)."""
    openai_server.default = Behaviour(tokens=40, tokens_per_s=200)
    openai_server.script({"status": 503}, {}, {"status": 401}, {})
    trace, report = tmp_path / "run.trace", tmp_path / "original.json"
    done = dspy_stream(
        *on(openai_server), "--concurrency", "1", "--record", str(trace), "--report", str(report),
        "first question", "second question", "third question", env=_env(tmp_path),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # one stream failed
    return trace, json.loads(report.read_text()), done


def _replay(tmp_path: Path, trace: Path, *args: str) -> tuple[dict, subprocess.CompletedProcess]:
    report = tmp_path / f"replay{len(list(tmp_path.glob('replay*.json')))}.json"
    done = dspy_stream("replay", str(trace), "--headless", "--report", str(report), *args, env=_env(tmp_path))
    return (json.loads(report.read_text()) if report.exists() else {}), done


def _assert_same_run(original: dict, replayed: dict, within_s: float = 0.005) -> None:
    for key in ("states", "attempts", "errors", "generated_texts", "output_lens", "questions", "completed",
                "failed", "total_retries", "stream_ids"):  # fmt: skip
        assert replayed[key] == original[key], key
    for key in LATENCIES:
        for a, b in zip(original[key], replayed[key], strict=True):
            assert (a is None) == (b is None), key
            if a is not None:
                assert abs(a - b) <= within_s, (key, a, b)
    for a, b in zip(original["itls"], replayed["itls"], strict=True):
        assert len(a) == len(b) and all(abs(x - y) <= within_s for x, y in zip(a, b, strict=True))
    assert abs(original["duration"] - replayed["duration"]) <= within_s


def test_a_replay_at_speed_1_reports_what_the_run_reported(recorded, tmp_path):
    trace, original, done = recorded
    assert original["states"] == ["done", "failed", "done"] and original["attempts"][0] == 2
    replayed, replay = _replay(tmp_path, trace)
    assert replay.returncode == 1, replay.stderr  # the same exit code: a stream failed
    _assert_same_run(original, replayed)
    # The same answers, tagged the same way (streams that start as another ends may swap lines).
    assert sorted(replay.stdout.splitlines()) == sorted(done.stdout.splitlines())
    assert "retry 1/3" in replay.stderr and "401" in replay.stderr


def test_a_replay_at_max_speed_is_quicker_and_still_reports_the_run(recorded, tmp_path):
    trace, original, _ = recorded
    started = time.monotonic()
    replayed, replay = _replay(tmp_path, trace, "--speed", "max")
    assert replay.returncode == 1, replay.stderr
    assert time.monotonic() - started < 10
    _assert_same_run(original, replayed)


def test_a_gzip_trace_is_read_as_the_plain_one(recorded, tmp_path):
    trace, original, _ = recorded
    packed = tmp_path / "run.trace.gz"
    packed.write_bytes(gzip.compress(trace.read_bytes()))
    replayed, _ = _replay(tmp_path, packed, "--speed", "max")
    _assert_same_run(original, replayed)


@pytest.mark.parametrize("packed", [False, True])
def test_a_trace_cut_short_replays_up_to_where_it_ends_with_a_note(recorded, tmp_path, packed):
    trace, original, _ = recorded
    lines = trace.read_bytes().splitlines(keepends=True)
    cut = b"".join(lines[:12]) + lines[12][:7]  # a crash mid-line, while the first stream streams
    path = tmp_path / ("cut.trace.gz" if packed else "cut.trace")
    path.write_bytes(gzip.compress(cut)[:-12] if packed else cut)  # gzip: no end-of-stream marker
    replayed, replay = _replay(tmp_path, path, "--speed", "max")
    notes = [line for line in replay.stderr.splitlines() if "cut short" in line]
    assert len(notes) == 1 and "Traceback" not in replay.stderr, replay.stderr
    assert replayed["num_prompts"] >= 1
    assert "cancelled" in replayed["states"]  # the stream the recording left open ends as it stood
    open_one = replayed["states"].index("cancelled")
    assert original["generated_texts"][open_one].startswith(replayed["generated_texts"][open_one])


def test_a_replay_opens_no_socket(recorded, tmp_path):
    trace, original, _ = recorded
    report = tmp_path / "offline.json"
    script = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise AssertionError('a replay opened a network connection')\n"
        "socket.socket.connect = socket.socket.connect_ex = refuse\n"
        "socket.create_connection = socket.getaddrinfo = refuse\n"
        "from tui.cli import main\n"
        f"code = main(['replay', {str(trace)!r}, '--headless', '--speed', 'max',"
        f" '--report', {str(report)!r}])\n"
        "assert 'dspy' not in sys.modules and 'litellm' not in sys.modules\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=_env(tmp_path), cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "AssertionError" not in done.stderr, done.stderr
    _assert_same_run(original, json.loads(report.read_text()))


def test_a_trace_keeps_no_key(openai_server, tmp_path):
    env = _env(tmp_path) | {"OPENAI_API_KEY": "sk-trace-secret-1234567890"}
    base = openai_server.base_url
    trace = tmp_path / "run.trace"
    done = dspy_stream(
        "--headless", "--model", "openai/test-model", "--api-base", base, "--record", str(trace),
        "--max-retries", "0", "q", env=env,
    )  # fmt: skip
    assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stderr  # errors are kept too
    assert '"e":1' in trace.read_text()
    text = trace.read_text()
    assert "sk-trace-secret" not in text


@pytest.mark.parametrize(
    "content, says",
    [(None, "no such file"), (b"", "empty"), (b"hello\n", "not a dspy-stream trace"),
     (b'{"trace": "dspy-stream", "version": 99}\n', "version")],
)  # fmt: skip
def test_a_file_that_is_no_trace_is_one_line(tmp_path, content, says):
    path = tmp_path / "bad.trace"
    if content is not None:
        path.write_bytes(content)
    done = dspy_stream("replay", str(path), "--headless", env=_env(tmp_path))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and says in done.stderr and "Traceback" not in done.stderr
