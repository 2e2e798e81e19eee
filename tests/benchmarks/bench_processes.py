"""Whole processes, as a user runs them: `dspy-stream --headless` and the dashboard, with worker
processes and with `--workers 0`, against the best raw `dspy.streamify` loop run as a script.

    python -m tests.benchmarks.bench_processes                 both parts
    python -m tests.benchmarks.bench_processes throughput      32 x 1,000 tokens, whole process timed
    python -m tests.benchmarks.bench_processes distortion      dashboard vs headless TTFT and ITL

throughput: every command is timed from spawn to exit (Python start, imports, the streams, the
report), 5 rounds in a rotating order; the ratio is the raw script's median time over the
command's. Target (issue 11): headless with workers >= 1.5 x.

distortion: the same paced load (8 streams x 300 tokens at 50 tok/s, and 24 streams) run headless
and in the dashboard (in a pseudo-terminal, `--exit-when-done`), each writing `--report`; the
dashboard's median TTFT and ITL over headless's. Target: within 10 %.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Sequence
from pathlib import Path

from tests.benchmarks import API_KEY, MODEL, median, print_table
from tests.support.openai_server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
STREAMS, TOKENS, ROUNDS = 32, 1000, 5
THROUGHPUT_TARGET = 1.5
DISTORTION_TARGET = 0.10
SIZE = (200, 60)

RAW_SCRIPT = f"""
import asyncio, sys
import dspy
from dspy.streaming import StreamListener, StreamResponse

base_url, count = sys.argv[1], int(sys.argv[2])
lm = dspy.LM("{MODEL}", api_base=base_url, api_key="{API_KEY}", cache=False, num_retries=0)

async def one(question):
    stream = dspy.streamify(
        dspy.Predict("question -> answer"),
        stream_listeners=[StreamListener(signature_field_name="answer")],
        is_async_program=True,
    )
    received = 0
    async for value in stream(question=question):
        if isinstance(value, StreamResponse):
            received += 1
    return received

async def main():
    with dspy.context(lm=lm, adapter=dspy.ChatAdapter()):
        questions = [f"Question {{i}}: why stream answers token by token?" for i in range(count)]
        return sum(await asyncio.gather(*(one(q) for q in questions)))

print(asyncio.run(main()))
"""


def environment(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(
        OPENAI_API_KEY=API_KEY,
        XDG_DATA_HOME=str(data / "data"),
        XDG_STATE_HOME=str(data / "state"),
        TERM="xterm-256color",
    )
    env.pop("TEXTUAL", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: imports read cached bytecode
    return env


def questions_file(directory: Path, count: int) -> Path:
    path = directory / f"questions-{count}.txt"
    path.write_text("".join(f"Question {i}: why stream answers token by token?\n" for i in range(count)))
    return path


def dspy_stream_args(base_url: str, questions: Path, report: Path, workers: int | None) -> list[str]:
    args = [
        sys.executable, "-m", "tui", "--model", MODEL, "--api-base", base_url,
        "--questions", str(questions), "--concurrency", str(STREAMS * 2),
        "--max-retries", "0", "--timeout", "120", "--report", str(report),
    ]  # fmt: skip
    if workers is not None:
        args += ["--workers", str(workers)]
    return args


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[2:5])}... exit {done.returncode}: {done.stderr[-400:]!r}")
    return seconds


def in_terminal(command: list[str], env: dict[str, str], timeout: float = 300) -> float:
    """Run `command` in a pseudo-terminal whose screen is read as fast as it is drawn."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
        env={**env, "COLUMNS": str(SIZE[0]), "LINES": str(SIZE[1])}, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    tail = b""
    try:
        while process.poll() is None:
            if time.perf_counter() - started > timeout:
                process.kill()
                raise RuntimeError(f"the dashboard did not end within {timeout:.0f} s")
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    tail = (tail + os.read(master, 1 << 16))[-2000:]
                except OSError:
                    break
        process.wait()
    finally:
        os.close(master)
    if process.returncode:
        raise RuntimeError(f"dashboard exit {process.returncode}: {tail[-400:]!r}")
    return time.perf_counter() - started


def throughput() -> list[str]:
    with tempfile.TemporaryDirectory() as scratch, ServerProcess(tokens=TOKENS) as server:
        directory = Path(scratch)
        env = environment(directory)
        questions = questions_file(directory, STREAMS)
        report = directory / "report.json"
        url = server.base_url
        commands = {
            "best raw loop script (is_async_program=True)": (
                [sys.executable, "-c", RAW_SCRIPT, url, str(STREAMS)], timed
            ),
            "dspy-stream --headless (workers: cores)": (
                [*dspy_stream_args(url, questions, report, None), "--headless"], timed
            ),
            "dspy-stream --headless --workers 0": (
                [*dspy_stream_args(url, questions, report, 0), "--headless"], timed
            ),
            "dspy-stream dashboard --exit-when-done (workers: cores)": (
                [*dspy_stream_args(url, questions, report, None), "--exit-when-done"], in_terminal
            ),
            "dspy-stream dashboard --exit-when-done --workers 0": (
                [*dspy_stream_args(url, questions, report, 0), "--exit-when-done"], in_terminal
            ),
        }  # fmt: skip
        for command, run in commands.values():  # warm up: .pyc files, the file system cache
            run(command, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        for round_number in range(ROUNDS):
            for name in names[round_number % len(names) :] + names[: round_number % len(names)]:
                command, run = commands[name]
                times[name].append(run(command, env))
                if name != names[0]:
                    shown = json.loads(report.read_text())
                    if shown["completed"] != STREAMS or shown["total_output_tokens"] < STREAMS * TOKENS:
                        raise RuntimeError(f"{name}: {shown['completed']} streams completed")
    baseline = median(times[names[0]])
    rows = [
        (name, median(runs), min(runs), max(runs), baseline / median(runs), baseline / min(runs))
        for name, runs in times.items()
    ]
    print_table(
        f"Whole processes: {STREAMS} streams x {TOKENS} tokens, unpaced server process, {ROUNDS} rounds",
        ("command", "median s", "min s", "max s", "x raw", "x raw (min)"),
        rows,
        notes=("spawn to exit, imports included; x raw: the raw script's time over the command's.",),
    )
    headless = baseline / median(times[names[1]])
    dashboard = baseline / median(times[names[3]])
    return [
        f"headless with workers >= {THROUGHPUT_TARGET} x the raw script: {headless:.2f} x:"
        f" {'met' if headless >= THROUGHPUT_TARGET else 'NOT met'}",
        f"dashboard with workers >= 1.0 x the raw script: {dashboard:.2f} x:"
        f" {'met' if dashboard >= 1.0 else 'NOT met'}",
    ]


def figures(report: Path) -> tuple[float, float]:
    data = json.loads(report.read_text())
    return data["median_ttft_ms"], data["median_itl_ms"]


def distortion() -> list[str]:
    verdicts, rows = [], []
    for streams in (8, 24):
        with tempfile.TemporaryDirectory() as scratch, ServerProcess(tokens=300, tokens_per_s=50) as server:
            directory = Path(scratch)
            env = environment(directory)
            questions = questions_file(directory, streams)
            measured: dict[str, list[tuple[float, float]]] = {}
            for round_number in range(3):
                for name in ("headless", "dashboard") if round_number % 2 == 0 else ("dashboard", "headless"):
                    report = directory / f"{name}.json"
                    command = dspy_stream_args(server.base_url, questions, report, None)
                    if name == "headless":
                        timed([*command, "--headless"], env)
                    else:
                        in_terminal([*command, "--exit-when-done"], env)
                    measured.setdefault(name, []).append(figures(report))
        for name, runs in measured.items():
            ttfts, itls = [t for t, _ in runs], [i for _, i in runs]
            rows.append((f"{streams} streams, {name}", median(ttfts), median(itls)))
        ttft = median([t for t, _ in measured["dashboard"]]) / median([t for t, _ in measured["headless"]])
        itl = median([i for _, i in measured["dashboard"]]) / median([i for _, i in measured["headless"]])
        met = abs(ttft - 1) <= DISTORTION_TARGET and abs(itl - 1) <= DISTORTION_TARGET
        verdicts.append(
            f"{streams} streams x 300 tokens at 50 tok/s: dashboard/headless TTFT {ttft:.2f} x,"
            f" ITL {itl:.2f} x (target within {DISTORTION_TARGET:.0%}): {'met' if met else 'NOT met'}"
        )
    print_table(
        "Does the dashboard distort what it measures? Median figures from --report, 3 runs each",
        ("run", "TTFT ms", "ITL ms"),
        rows,
    )
    return verdicts


PARTS = {"throughput": throughput, "distortion": distortion}


def main(argv: Sequence[str]) -> int:
    names = argv or list(PARTS)
    if unknown := sorted(set(names) - set(PARTS)):
        print(f"unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}", file=sys.stderr)
        return 2
    verdicts = [line for name in names for line in PARTS[name]()]
    print("\n".join(f"target: {line}" for line in verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
