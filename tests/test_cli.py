"""The command line as a user runs it: a real process, real HTTP to the loopback server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.openai_server import Behaviour

ROOT = Path(__file__).resolve().parents[1]


def dspy_stream(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tui", *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture
def unused_port() -> int:
    """A loopback port with nothing listening on it."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def on(server, model: str = "openai/test-model") -> list[str]:
    return ["--headless", "--model", model, "--api-base", server.base_url, "--retry-delay", "0.05"]


def assert_one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("dspy-stream: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_headless_streams_the_answer_to_stdout_and_status_to_stderr(openai_server):
    openai_server.default = Behaviour(text="Rust is a systems programming language.")
    result = dspy_stream(*on(openai_server), "What is Rust?")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Rust is a systems programming language."
    assert "[done]" in result.stderr and "TTFT" in result.stderr and "tok/s" in result.stderr


def test_retries_are_reported_and_the_answer_completes(openai_server):
    openai_server.default = Behaviour(text="complete answer after retries")
    openai_server.script(Behaviour(status=429, retry_after=0.1), Behaviour(cut_after=3))
    result = dspy_stream(*on(openai_server), "--mode", "recovery", "q")
    assert result.returncode == 0, result.stderr
    assert "retry 1/3" in result.stderr and "429 rate limited" in result.stderr
    assert "retry 2/3" in result.stderr and "connection failed" in result.stderr
    assert result.stdout.splitlines()[-1] == "complete answer after retries"


@pytest.mark.parametrize("fault", [Behaviour(status=401), Behaviour(status=400)])
def test_a_final_error_is_one_line_and_exit_1(openai_server, fault):
    openai_server.script(fault)
    result = dspy_stream(*on(openai_server), "q")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert any(line.startswith("error: ") for line in result.stderr.splitlines())
    assert "sk-test" not in result.stderr


def test_an_unreachable_server_fails_with_one_line(unused_port):
    result = dspy_stream(
        "--headless",
        "--model",
        "openai/x",
        "--api-base",
        f"http://127.0.0.1:{unused_port}/v1",
        "--max-retries",
        "1",
        "--retry-delay",
        "0.01",
        "q",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot be reached" in result.stderr  # found by the check before the first question


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--headless", ""], {}, "question is empty"),
        (
            ["--headless", "--buffer-size", "0", "q"],
            {},
            "buffer_size=0 (flag --buffer-size): must be at least 1",
        ),
        (
            ["--headless", "--retry-delay", "soon", "q"],
            {},
            "retry_delay='soon' (flag --retry-delay): expected a number",
        ),
        (["--headless", "q"], {"DSPY_STREAM_TIMEOUT": "abc"}, "environment DSPY_STREAM_TIMEOUT"),
        (["--headless", "--mode", "fast", "q"], {}, "--mode"),
        (["--headless", "--questions", "/nonexistent/q.txt"], {}, "does not exist"),
        (["--headless", "--model", "openai/gpt-4o-mini", "q"], {}, "OPENAI_API_KEY"),
        (["--headless", "--model", "anthropic/claude-3-5-haiku-latest", "q"], {}, "ANTHROPIC_API_KEY"),
        (["--headless", "--model", "nosuchprovider/model", "q"], {}, "nosuchprovider"),
        (["--headless", "--model", "local:/nonexistent/model.gguf", "q"], {}, "model.gguf"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, env, expected):
    result = dspy_stream(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert expected in assert_one_line_error(result.stderr)


def test_a_bad_config_file_value_names_the_file(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("concurrency = -3\n")
    result = dspy_stream("--config", str(config), "--headless", "q")
    assert result.returncode == 2
    assert f"concurrency=-3 (config file {config})" in assert_one_line_error(result.stderr)


def test_flags_override_environment_override_config_file(tmp_path, openai_server):
    from tui.config import load_settings

    config = tmp_path / "config.toml"
    config.write_text('buffer_size = 10\ntimeout = 5.0\nprogram = "cot"\n')
    settings = load_settings(
        {"buffer_size": "30"},
        config_path=config,
        environ={"DSPY_STREAM_BUFFER_SIZE": "20", "DSPY_STREAM_TIMEOUT": "7"},
    )
    assert (settings.buffer_size, settings.timeout, settings.program) == (30, 7.0, "cot")


def test_malformed_questions_file_lines_are_reported_and_skipped(tmp_path, openai_server):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "first"}\nnot json\n{"id": 3}\n{"question": "second", "id": "b"}\n')
    result = dspy_stream(*on(openai_server), "--questions", str(questions))
    assert result.returncode == 0, result.stderr
    assert f"{questions}:2: not valid JSON" in result.stderr
    assert f'{questions}:3: no "question" text' in result.stderr
    assert len(openai_server.completions) == 2


def test_concurrent_mode_tags_each_streams_question_and_answer(openai_server):
    openai_server.default = Behaviour(tokens=12)
    result = dspy_stream(*on(openai_server), "--mode", "concurrent", "one", "two", "three")
    assert result.returncode == 0, result.stderr
    for n, question in ((1, "one"), (2, "two"), (3, "three")):
        assert f"[{n}] Q: {question}\n" in result.stdout
    assert "3 streams: 3 done, 0 failed" in result.stderr


def test_aggregate_mode_tags_every_line_with_its_stream(openai_server):
    openai_server.default = Behaviour(tokens=15, tokens_per_s=200)
    result = dspy_stream(*on(openai_server), "--mode", "aggregate", "one", "two")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line]
    assert lines and all(line.startswith(("[1] ", "[2] ")) for line in lines)
    assert {line.split("]")[0] for line in lines} == {"[1", "[2"}


def test_stream_to_file_writes_the_answer_as_it_arrives(tmp_path, openai_server):
    openai_server.default = Behaviour(text="written to the file")
    out = tmp_path / "answers.txt"
    result = dspy_stream(*on(openai_server), "--output", str(out), "q")
    assert result.returncode == 0, result.stderr
    assert out.read_text().strip() == "written to the file"


def test_model_output_escapes_are_shown_literally_on_a_terminal(openai_server):
    """With a terminal on stdout, control characters are written out, never sent raw."""
    import pty

    openai_server.default = Behaviour(text="[bold red]x[/] \x1b[2J boom \x07")
    main_fd, child_fd = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", *on(openai_server), "q"],
        stdout=child_fd,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    os.close(child_fd)
    output = b""
    while True:
        try:
            data = os.read(main_fd, 4096)
        except OSError:
            break
        if not data:
            break
        output += data
    proc.wait(30)
    text = output.decode()
    assert "[bold red]x[/]" in text
    assert "\\x1b[2J" in text and "\x1b" not in text
    assert "\\x07" in text


def test_interrupt_exits_130_and_keeps_the_partial_answer(tmp_path, openai_server):
    openai_server.default = Behaviour(tokens=400, tokens_per_s=40)
    out = tmp_path / "partial.txt"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", *on(openai_server), "--output", str(out), "q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert openai_server.wait_for(lambda: any(r.tokens_sent > 20 for r in openai_server.requests), timeout=30)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stdout.strip() and out.read_text().strip().startswith(stdout.strip()[:20])


def test_report_is_written_as_json(tmp_path, openai_server):
    report = tmp_path / "report.json"
    result = dspy_stream(*on(openai_server), "--report", str(report), "one", "two")
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["completed"] == 2 and data["num_prompts"] == 2


def test_help_names_the_history_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tui", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert "dspy-stream history show RUN" in result.stdout
