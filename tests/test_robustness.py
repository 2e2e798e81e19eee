"""Nothing lost under signals, broken stdout, bad settings and hostile text: real processes, real files."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.openai_server import Behaviour
from tests.support.terminal import TerminalProcess
from tests.test_cli import ROOT, assert_one_line_error, dspy_stream, on
from tests.test_cli import unused_port as unused_port


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    return env


def _start(args: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tui", *args], env=env, cwd=ROOT, text=True,
        stdout=kwargs.pop("stdout", subprocess.PIPE), stderr=subprocess.PIPE, **kwargs,
    )  # fmt: skip


def _read_until_closed(leader: int) -> bytes:
    """Everything a pty's other side writes until it closes."""
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _wait_until(condition, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _history_runs(tmp_path: Path) -> list[tuple]:
    import sqlite3

    db = sqlite3.connect(tmp_path / "data" / "dspy-stream" / "history.sqlite3")
    try:
        return db.execute("SELECT id, status FROM runs").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminating_signal_ends_the_run_like_ctrl_c(openai_server, tmp_path, signum):
    openai_server.default = Behaviour(tokens=400, token_delay=0.02)
    questions = tmp_path / "qs.txt"
    questions.write_text("".join(f"question {i}\n" for i in range(20)))
    report, progress = tmp_path / "r.json", tmp_path / "p.jsonl"
    proc = _start(
        [*on(openai_server), "--questions", str(questions), "--concurrency", "4",
         "--report", str(report), "--progress", str(progress)],
        _env(tmp_path),
    )  # fmt: skip
    _wait_until(lambda: len(openai_server.requests) >= 4, what="four streams to start")

    def tokens_streamed() -> bool:
        lines = progress.read_text().splitlines() if progress.exists() else []
        return bool(lines) and json.loads(lines[-1])["streamed_tokens"] > 0

    _wait_until(tokens_streamed, what="a progress record with tokens")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert f"stopped by {signal.Signals(signum).name}" in err
    data = json.loads(report.read_text())
    assert "cancelled" in data["states"] or "interrupted" in data["states"], data["states"]
    assert any(text for text in data["generated_texts"]), "the partial answers were lost"
    assert out.strip(), "no partial answer reached stdout"
    assert json.loads(progress.read_text().splitlines()[-1])
    assert [status for _, status in _history_runs(tmp_path)] == ["interrupted"]


@pytest.mark.parametrize("sink", ["pipe", "/dev/full"])
def test_a_failing_stdout_never_loses_the_report_or_the_history(openai_server, tmp_path, sink):
    openai_server.default = Behaviour(tokens=200)
    report = tmp_path / "r.json"
    args = [*on(openai_server), "--report", str(report), "one", "two", "three"]
    if sink == "pipe":
        proc = _start(args, _env(tmp_path))
        assert proc.stdout is not None
        proc.stdout.read(100)
        proc.stdout.close()  # as `| head -c 100` does
        err = proc.stderr.read() if proc.stderr else ""
        proc.wait(timeout=60)
    else:
        with open(sink, "w") as full:
            proc = _start(args, _env(tmp_path), stdout=full)
            _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err and "Broken pipe" not in err, err
    assert proc.returncode == 0, err
    assert json.loads(report.read_text())["completed"] == 3
    assert [status for _, status in _history_runs(tmp_path)] == ["finished"]


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--timeout", "nan"), ("--retry-delay", "nan"), ("--temperature", "nan"), ("--temperature", "inf"),
     ("--temperature", "-5"), ("--temperature", "2.5"), ("--fault-rate", "nan")],
)  # fmt: skip
def test_every_float_setting_is_finite_and_in_range_from_flags(flag, value):
    result = dspy_stream("--headless", flag, value, "q", timeout=30)
    assert result.returncode == 2
    assert flag.removeprefix("--").replace("-", "_") in assert_one_line_error(result.stderr)


def test_float_settings_from_environment_and_toml_are_checked(tmp_path):
    result = dspy_stream("--headless", "q", env={"DSPY_STREAM_TIMEOUT": "inf"}, timeout=30)
    assert result.returncode == 2 and "DSPY_STREAM_TIMEOUT" in assert_one_line_error(result.stderr)
    config = tmp_path / "c.toml"
    config.write_text("temperature = nan\n")
    result = dspy_stream("--headless", "--config", str(config), "q", timeout=30)
    assert result.returncode == 2 and "temperature" in assert_one_line_error(result.stderr)


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path):
    config = tmp_path / "c.toml"
    config.write_bytes(b'model = "caf\xe9"\n')
    result = dspy_stream("--headless", "--config", str(config), "q", timeout=30)
    assert result.returncode == 2
    assert "not UTF-8" in assert_one_line_error(result.stderr)


def test_csv_cells_that_would_run_as_formulas_are_escaped(openai_server, tmp_path):
    openai_server.default = Behaviour(text='=HYPERLINK("http://evil","click")')
    report = tmp_path / "r.csv"
    questions = ["=1+1", "+cmd", "-2+3", "@SUM(A1)", " =spaced", "plain -dash"]
    qs = tmp_path / "qs.txt"
    qs.write_text("\n".join(questions) + "\n")
    result = dspy_stream(
        *on(openai_server), "--report", str(report), "--questions", str(qs), env=_env(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(report.open(encoding="utf-8")))
    assert sorted(r["question"] for r in rows) == sorted(
        ["'=1+1", "'+cmd", "'-2+3", "'@SUM(A1)", "'=spaced", "plain -dash"]
    )
    assert all(r["generated_text"].startswith("'=HYPERLINK") for r in rows)
    assert all(not r["ttft_ms"].startswith("'") for r in rows)


BIDI = "\u202e\u2066\u2069\u200f"


def test_bidi_controls_are_shown_as_marks_in_headless_output_and_history(openai_server, tmp_path):
    openai_server.default = Behaviour(text=f"safe{BIDI}text")
    env = _env(tmp_path)
    import pty

    leader, follower = pty.openpty()
    proc = _start([*on(openai_server), "q"], env, stdout=follower)
    os.close(follower)
    shown = _read_until_closed(leader).decode()
    proc.wait(timeout=60)
    os.close(leader)
    assert "safe" in shown and not any(ch in shown for ch in BIDI), repr(shown)
    assert "\\u202e" in shown
    listing = subprocess.run(
        [sys.executable, "-m", "tui", "history", "show", "1"], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "safe" in listing.stdout and not any(ch in listing.stdout for ch in BIDI), listing.stdout


def test_the_dashboard_sanitizer_shows_bidi_controls():
    from tui.widgets.sanitize import one_line, sanitize

    for ch in BIDI:
        assert ch not in sanitize(f"a{ch}b") and ch not in one_line(f"a{ch}b")


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (needs root): a real full disk, not a patched write."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_under_the_history_costs_one_warning_not_the_run(openai_server, tmp_path, tiny_disk):
    openai_server.default = Behaviour(tokens=300)  # each stream's answer is bigger than what is left
    questions = tmp_path / "qs.txt"
    questions.write_text("".join(f"question {i}\n" for i in range(60)))
    env = _env(tmp_path) | {"XDG_DATA_HOME": str(tiny_disk)}
    report = tmp_path / "r.json"
    result = dspy_stream(
        *on(openai_server), "--questions", str(questions), "--report", str(report), env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "history" in line and "warning" in line]
    assert len(warnings) == 1, result.stderr
    assert json.loads(report.read_text())["completed"] == 60


def _corrupt_history(tmp_path: Path, openai_server) -> Path:
    env = _env(tmp_path)
    for i in range(3):
        assert dspy_stream(*on(openai_server), f"question {i}", env=env).returncode == 0
    db = tmp_path / "data" / "dspy-stream" / "history.sqlite3"
    import sqlite3

    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) >= 3 * page
    data[page : page + 200] = b"\xff" * 200  # a damaged b-tree page; the header is intact
    db.write_bytes(bytes(data))
    return db


def test_a_damaged_history_is_moved_aside_and_a_fresh_one_started(openai_server, tmp_path):
    openai_server.default = Behaviour(text="fine")
    db = _corrupt_history(tmp_path, openai_server)
    listing = subprocess.run(
        [sys.executable, "-m", "tui", "history"], env=_env(tmp_path), cwd=ROOT,
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "Traceback" not in listing.stderr and listing.returncode == 2, listing.stderr
    assert "damaged" in assert_one_line_error(listing.stderr)
    result = dspy_stream(*on(openai_server), "after", env=_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fine"
    notes = [line for line in result.stderr.splitlines() if "damaged" in line]
    assert len(notes) == 1, result.stderr
    moved = list(db.parent.glob("history.sqlite3.damaged-*"))
    assert moved and str(moved[0]) in notes[0]
    assert [status for _, status in _history_runs(tmp_path)] == ["finished"]


def test_history_on_a_read_only_medium_is_read(openai_server, tmp_path):
    openai_server.default = Behaviour(text="kept")
    env = _env(tmp_path)
    assert dspy_stream(*on(openai_server), "a question", env=env).returncode == 0
    folder = tmp_path / "data" / "dspy-stream"
    mount = tmp_path / "ro"
    mount.mkdir()
    bound = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(mount)], capture_output=True)
    if bound.returncode != 0:
        pytest.skip("a read-only bind mount needs root")
    try:
        shown = subprocess.run(
            [sys.executable, "-m", "tui", "history", "show", "last", "--db", str(mount / "history.sqlite3")],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    assert shown.returncode == 0, shown.stderr
    assert "kept" in shown.stdout


@pytest.fixture
def read_only_dir(tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    mount = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True)
    if mount.returncode != 0:
        folder.chmod(0o500)
        if os.access(folder, os.W_OK):
            pytest.skip("no way to make a read-only folder here")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


@pytest.mark.parametrize("option", ["--report", "--output", "--progress"])
def test_an_unwritable_output_path_fails_before_the_first_request(openai_server, read_only_dir, option):
    target = read_only_dir / ("r.json" if option == "--report" else "out.txt")
    result = dspy_stream(*on(openai_server), option, str(target), "q")
    assert result.returncode == 2
    line = assert_one_line_error(result.stderr)
    assert option in line and str(target) in line
    assert openai_server.requests == []


def test_an_unwritable_log_directory_is_named(openai_server, read_only_dir):
    result = dspy_stream(*on(openai_server), "q", env={"XDG_STATE_HOME": str(read_only_dir)})
    assert result.returncode == 2
    assert "log directory" in assert_one_line_error(result.stderr)
    assert openai_server.requests == []


def test_output_and_report_on_the_same_file_is_refused(openai_server, tmp_path):
    same = tmp_path / "same.json"
    result = dspy_stream(*on(openai_server), "--output", str(same), "--report", str(same), "q")
    assert result.returncode == 2
    assert "same file" in assert_one_line_error(result.stderr)
    assert openai_server.requests == []


KEY = "zq7-Loopback-Key-0123456789abcdef"  # a key with no well-known shape: found by its value


def test_a_key_echoed_by_the_server_is_hidden_everywhere(openai_server, tmp_path):
    openai_server.default = Behaviour(text=f"the key is {KEY} and sk-learn with SK-II, bearer of bad news")
    env = _env(tmp_path) | {"MY_SERVICE_API_KEY": KEY}
    report, output = tmp_path / "r.json", tmp_path / "out.txt"
    args = [*on(openai_server), "--report", str(report), "--output", str(output)]
    result = dspy_stream(*args, "q", env=env)
    assert result.returncode == 0, result.stderr
    history = subprocess.run(
        [sys.executable, "-m", "tui", "history", "show", "last"], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    import sqlite3

    db = sqlite3.connect(tmp_path / "data" / "dspy-stream" / "history.sqlite3")
    stored = repr(
        db.execute("SELECT * FROM streams").fetchall() + db.execute("SELECT * FROM attempts").fetchall()
    )
    db.close()
    places = {"stdout": result.stdout, "stderr": result.stderr, "report": report.read_text()}
    places |= {"output": output.read_text(), "history show": history.stdout, "db": stored}
    for where, text in places.items():
        assert KEY not in text and KEY[:12] not in text, where
    assert "sk-learn with SK-II, bearer of bad news" in result.stdout  # words are not keys
    assert "sk-learn with SK-II, bearer of bad news" in json.loads(report.read_text())["generated_texts"][0]


def test_a_password_in_the_api_base_is_refused_in_one_line_that_hides_it(tmp_path, openai_server):
    """Neither DSPy's client nor LiteLLM's sends `user:password@` (DSPy's took it for part of the
    host name and retried a connection that could not work): refused before anything runs, and
    the password is in no line, log or history."""
    base = openai_server.base_url.replace("http://", "http://user:pw-SECRET-42@")
    env = _env(tmp_path)
    result = dspy_stream("--headless", "--model", "openai/m", "--api-base", base, "q", env=env)
    assert result.returncode == 2, result.stderr
    line = assert_one_line_error(result.stderr)
    assert "a user and password in the address" in line and "user:…@" in line
    assert not openai_server.completions
    logs = "".join(p.read_text() for p in (tmp_path / "state").rglob("*.log"))
    stored = "".join(p.read_bytes().decode("latin-1") for p in (tmp_path / "data").rglob("*") if p.is_file())
    for where, text in [("stderr", result.stderr), ("log", logs), ("history", stored)]:
        assert "pw-SECRET-42" not in text, where


def test_an_invalid_utf8_line_is_skipped_with_its_number(openai_server, tmp_path):
    openai_server.default = Behaviour(text="ok")
    questions = tmp_path / "qs.txt"
    questions.write_bytes(b"first question\ncaf\xe9 au lait\nthird question\n")
    result = dspy_stream(*on(openai_server), "--questions", str(questions), env=_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"{questions}:2: not UTF-8" in result.stderr
    assert len(openai_server.requests) == 2


def test_a_questions_device_without_line_ends_fails_fast_with_file_and_line(openai_server):
    started = time.monotonic()
    result = dspy_stream(*on(openai_server), "--questions", "/dev/zero", timeout=30)
    assert result.returncode == 2
    assert "/dev/zero:1: line longer than" in assert_one_line_error(result.stderr)
    assert time.monotonic() - started < 15
    assert openai_server.requests == []


def test_jsonl_keys_map_to_input_fields_and_a_missing_one_skips_that_line(tmp_path):
    from tui.questions import read_questions

    path = tmp_path / "qs.jsonl"
    path.write_text(
        '{"question": "q1", "context": "c1"}\n{"question": "q2"}\n{"question": "q3", "context": "c3"}\n'
    )
    parsed = read_questions(path, input_fields=("question", "context"))
    assert [q.inputs for q in parsed.questions] == [
        {"question": "q1", "context": "c1"},
        {"question": "q3", "context": "c3"},
    ]
    assert parsed.problems == [
        f"{path}:2: missing input field 'context' (the program's inputs are question, context); line skipped"
    ]


def test_a_chunk_over_the_sse_line_limit_is_named_and_not_retried(openai_server):
    openai_server.default = Behaviour(text="start " + "x" * 5_000_000 + " end")
    result = dspy_stream(*on(openai_server), "q")
    assert result.returncode == 1
    assert "a chunk larger than 64 KiB" in result.stderr
    assert "retry" not in result.stderr and "connection failed" not in result.stderr
    assert len(openai_server.requests) == 1


def test_the_interrupt_message_starts_on_its_own_line(openai_server, tmp_path):
    import pty

    openai_server.default = Behaviour(text=" ".join(f"word{i}" for i in range(500)), token_delay=0.02)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", *on(openai_server), "one question"], env=_env(tmp_path), cwd=ROOT,
        stdout=follower, stderr=follower, text=True,
    )  # fmt: skip
    os.close(follower)
    shown = b""
    deadline = time.monotonic() + 30
    while b"word3 " not in shown and time.monotonic() < deadline:
        shown += os.read(leader, 4096)
    proc.send_signal(signal.SIGINT)
    shown += _read_until_closed(leader)
    proc.wait(timeout=30)
    os.close(leader)
    lines = shown.decode().replace("\r\n", "\n").splitlines()
    assert proc.returncode == 130
    assert any(line.startswith("dspy-stream: interrupted") for line in lines), lines


def test_an_unreachable_api_base_is_found_before_the_first_question_within_2_s(unused_port):
    started = time.monotonic()
    result = dspy_stream(
        "--headless", "--model", "openai/x", "--api-base", f"http://127.0.0.1:{unused_port}/v1", "q"
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    line = assert_one_line_error(result.stderr)
    assert "cannot be reached" in line and str(unused_port) in line
    assert "retry" not in result.stderr and "the answer restarts" not in result.stderr
    # The process's own start (importing DSPy) is not the check: the check itself is under 2 s.
    assert elapsed < 2 + _startup_seconds()


def _startup_seconds() -> float:
    started = time.monotonic()
    assert dspy_stream("--headless", "--temperature", "9", "q").returncode == 2
    return time.monotonic() - started + 4  # + DSPy's import, which that error path skips


def _dashboard(server, tmp_path: Path, *args: str) -> TerminalProcess:
    command = [
        sys.executable,
        "-m",
        "tui",
        "--model",
        "openai/test-model",
        "--api-base",
        server.base_url,
        *args,
    ]
    return TerminalProcess(command, env=_env(tmp_path), cwd=ROOT)


def _until_two_streams_flow(term: TerminalProcess, server) -> None:
    term.wait_for(lambda shown: b"\x1b[?1049h" in shown, what="the alternate screen")
    _wait_until(lambda: sum(r.tokens_sent > 20 for r in server.completions) == 2, what="two streams")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminating_signal_ends_the_dashboard_like_quit(openai_server, tmp_path, signum):
    openai_server.default = Behaviour(text=" ".join(f"word{i}" for i in range(400)), token_delay=0.02)
    output = tmp_path / "answers.txt"
    with _dashboard(openai_server, tmp_path, "--output", str(output), "one", "two") as term:
        _until_two_streams_flow(term, openai_server)
        os.kill(term.pid, signum)
        code = term.wait(30)
        shown = term.output
    assert code == 128 + signum, shown[-2000:]
    restored = shown[shown.rindex(b"\x1b[?1049h") :]
    assert b"\x1b[?1049l" in restored, "the alternate screen was not left"
    assert b"\x1b[?1000l" in restored, "mouse reporting was left on"
    assert [status for _, status in _history_runs(tmp_path)] == ["interrupted"]
    written = output.read_text()
    for number in (1, 2):
        assert f"[{number}] Q: " in written and f"[{number}] word0 word1 word2" in written, written


def test_the_dashboard_draws_before_the_model_loads_and_a_bad_program_ends_it_in_one_line(
    openai_server, tmp_path
):
    (tmp_path / "qa.py").write_text("import dspy\n\nQA = 42\n")
    with _dashboard(openai_server, tmp_path, "--program", f"{tmp_path / 'qa.py'}:QA", "one") as term:
        term.wait_for(lambda shown: b"Loading" in shown, what="the loading frame")
        assert term.wait(60) == 2, term.output[-2000:]
        after = term.output[term.output.rindex(b"\x1b[?1049l") :].decode(errors="replace")
    assert "Traceback" not in after
    errors = [line for line in after.splitlines() if "dspy-stream: error:" in line]
    assert len(errors) == 1 and "QA" in errors[0], after
    assert openai_server.completions == [], "no question ran"


def test_a_question_typed_while_the_program_loads_waits_and_then_streams(openai_server, tmp_path):
    openai_server.default = Behaviour(tokens=5)
    slow = tmp_path / "slow.py"
    slow.write_text("import time\n\nimport dspy\n\ntime.sleep(3)\nQA = dspy.Predict('question -> answer')\n")
    with _dashboard(openai_server, tmp_path, "--program", f"{slow}:QA") as term:
        term.wait_for(lambda shown: b"Loading" in shown, what="the loading frame")
        term.send(b"hello there\r")
        term.wait_for(lambda shown: b"waiting" in shown, what="the question held while loading")
        assert openai_server.completions == []
        _wait_until(lambda: len(openai_server.completions) == 1, what="the question asked once loaded")
        assert "hello there" in openai_server.completions[0].body.decode()
        _wait_until(lambda: b"done" in term.output[-4000:], what="the answer")
        term.send(b"\x11")
        assert term.wait(30) == 0, term.output[-2000:]


def test_a_program_with_two_inputs_gets_its_entry_form_once_the_worker_has_loaded_it(openai_server, tmp_path):
    openai_server.default = Behaviour(tokens=5)
    signature = ("--signature", "context, question -> answer")
    with _dashboard(openai_server, tmp_path, *signature) as term:
        term.wait_for(lambda shown: b"context \xc2\xb7 predict" in shown, what="the entry form")
        term.send(b"my notes\twhat is it?\r")
        _wait_until(lambda: len(openai_server.completions) == 1, what="the question asked")
        prompt = openai_server.completions[0].body.decode()
        assert "my notes" in prompt and "what is it?" in prompt
        _wait_until(lambda: b"done" in term.output[-4000:], what="the answer")
        term.send(b"\x11")  # Ctrl+Q: nothing is live, so it quits at once
        assert term.wait(30) == 0, term.output[-2000:]


@pytest.mark.parametrize("hang_up", [False, True], ids=["terminal gone", "terminal gone, then SIGHUP"])
def test_a_dashboard_whose_terminal_goes_away_still_ends_and_keeps_everything(
    openai_server, tmp_path, hang_up
):
    """Its window closed: every write to the terminal fails; a SIGHUP may follow, or not."""
    openai_server.default = Behaviour(text=" ".join(f"word{i}" for i in range(400)), token_delay=0.02)
    report = tmp_path / "r.json"
    with _dashboard(openai_server, tmp_path, "--report", str(report), "one", "two") as term:
        _until_two_streams_flow(term, openai_server)
        term.close_terminal()
        if hang_up:
            term.hang_up()
        assert term.wait(30) in (128 + signal.SIGHUP, 130)
    data = json.loads(report.read_text())
    assert data["states"] == ["cancelled", "cancelled"]
    assert all(text.startswith("word0 word1 word2") for text in data["generated_texts"]), data
    assert [status for _, status in _history_runs(tmp_path)] == ["interrupted"]


def test_the_dashboard_writes_its_output_file_in_the_headless_shape(openai_server, tmp_path):
    openai_server.default = Behaviour(text="alpha beta\ngamma delta")
    output = tmp_path / "answers.txt"
    with _dashboard(openai_server, tmp_path, "--output", str(output), "one", "two") as term:
        term.wait_for(lambda shown: b"\x1b[?1049h" in shown, what="the alternate screen")
        _wait_until(lambda: output.read_text().count("gamma delta") == 2, what="both answers in the file")
        _wait_until(lambda: [s for _, s in _history_runs(tmp_path)] != [], what="the history row")
        term.send(b"\x11")  # Ctrl+Q: nothing is live, so it quits at once
        assert term.wait(30) == 0, term.output[-2000:]
    lines = output.read_text().splitlines()
    for number, question in ((1, "one"), (2, "two")):
        assert [line for line in lines if line.startswith(f"[{number}] ")] == [
            f"[{number}] Q: {question}", f"[{number}] alpha beta", f"[{number}] gamma delta",
        ]  # fmt: skip
    assert output.read_text().endswith("\n") and "\x1b" not in output.read_text()


def test_chunks_without_choices_are_a_failure_in_one_line_not_an_empty_success(openai_server, tmp_path):
    openai_server.default = Behaviour(no_choices=True)
    report = tmp_path / "r.json"
    result = dspy_stream(*on(openai_server), "--adapter", "plain", "--report", str(report), "q")
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: incomplete stream: empty answer: the server sent no text"], result.stderr
    assert "Traceback" not in result.stderr and "cache hit" not in result.stderr
    data = json.loads(report.read_text())
    assert data["states"] == ["failed"] and data["cache_hits"] == [False]
    assert len(openai_server.completions) == 1, "an empty answer is not worth another attempt"


def test_a_cache_hit_is_reported_only_when_dspys_cache_answered(openai_server, tmp_path):
    openai_server.default = Behaviour(text="an answer worth keeping")
    report = tmp_path / "r.json"
    env = {"DSPY_CACHEDIR": str(tmp_path / "cache")}
    for cached in (False, True):
        result = dspy_stream(
            *on(openai_server), "--cache", "--report", str(report), "the same question", env=env
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "an answer worth keeping\n"
        assert json.loads(report.read_text())["cache_hits"] == [cached]
        assert ("cache hit" in result.stderr) is cached, result.stderr
    assert len(openai_server.completions) == 1


@pytest.mark.parametrize(("fail_second", "code"), [(False, 0), (True, 1)])
def test_exit_when_done_ends_the_dashboard_by_itself_with_the_headless_exit_code(
    openai_server, tmp_path, fail_second, code
):
    second = Behaviour(status=401) if fail_second else Behaviour(tokens=5)
    openai_server.script(Behaviour(tokens=5), second)
    report = tmp_path / "r.json"
    args = ("--exit-when-done", "--concurrency", "1", "--report", str(report), "one", "two")
    with _dashboard(openai_server, tmp_path, *args) as term:
        assert term.wait(60) == code, term.output[-2000:]
        assert b"\x1b[?1049l" in term.output  # the terminal is restored
    data = json.loads(report.read_text())
    assert data["num_prompts"] == 2
    assert data["states"] == (["done", "failed"] if fail_second else ["done", "done"])
    assert [status for _, status in _history_runs(tmp_path)] == ["finished"]
