"""Startup: from spawning `python -m tui` in a terminal to the dashboard's first frame.

    python -m tests.benchmarks.bench_startup

Each command runs in a pseudo-terminal (160 x 45); the clock stops when text that only the first
frame draws appears on the terminal. Baseline, measured in the same run: `python -c` with a trivial
Textual app (one `Static`), i.e. the cost of Python and Textual alone. Target: <= 0.5 s: the
front never imports DSPy, which loads in a worker process after the first frame.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Sequence
from pathlib import Path

from tests.benchmarks import median, print_table

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 5
TARGET_S = 0.5
SIZE = (160, 45)
TIMEOUT_S = 20.0
ALTERNATE_SCREEN = b"\x1b[?1049h"

TRIVIAL_APP = """
from textual.app import App
from textual.widgets import Static

class Trivial(App):
    def compose(self):
        yield Static("startup-marker")

Trivial().run()
"""

COMMANDS: dict[str, tuple[list[str], bytes]] = {
    # A model that needs no download: nothing is asked, so nothing connects.
    "python -m tui (dashboard)": (
        [sys.executable, "-m", "tui", "--model", "openai/test-model", "--api-base", "http://127.0.0.1:9/v1"],
        b"Loading",
    ),
    "baseline: python -c trivial Textual app": ([sys.executable, "-c", TRIVIAL_APP], b"startup-marker"),
}


def first_frame(command: list[str], marker: bytes) -> tuple[float, float]:
    """Seconds from spawn to the alternate screen, and to `marker` on the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(SIZE[0]), "LINES": str(SIZE[1])}
    env.pop("TEXTUAL", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: imports read cached bytecode
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env, start_new_session=True
    )
    os.close(slave)
    seen, alternate, frame = b"", float("nan"), float("nan")
    try:
        while time.perf_counter() - started < TIMEOUT_S:
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            seen += chunk
            now = time.perf_counter() - started
            if alternate != alternate and ALTERNATE_SCREEN in seen:
                alternate = now
            if marker in seen:
                frame = now
                break
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        os.close(master)
    if frame != frame:
        tail = seen[-400:].decode(errors="replace")
        raise RuntimeError(f"no first frame from {' '.join(command)!r}; the terminal showed: {tail!r}")
    return alternate, frame


def main(argv: Sequence[str]) -> int:
    for command, marker in COMMANDS.values():  # warm up: the file system cache, .pyc files
        first_frame(command, marker)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    for _ in range(ROUNDS):
        for name, (command, marker) in COMMANDS.items():
            times[name].append(first_frame(command, marker))
    baseline = median([frame for _, frame in times["baseline: python -c trivial Textual app"]])
    rows = []
    for name, runs in times.items():
        frames = [frame for _, frame in runs]
        rows.append(
            (
                name,
                median([alternate for alternate, _ in runs]),
                median(frames),
                min(frames),
                max(frames),
                median(frames) / baseline,
            )
        )
    print_table(
        f"Startup: spawn to first frame in a {SIZE[0]} x {SIZE[1]} pty, median of {ROUNDS}",
        ("command", "alt screen s", "first frame s", "min s", "max s", "x baseline"),
        rows,
    )
    dashboard = median([frame for _, frame in times["python -m tui (dashboard)"]])
    verdict = "met" if dashboard <= TARGET_S else "NOT met"
    ratio = dashboard / baseline
    print(f"target: first frame <= {TARGET_S} s: {dashboard:.2f} s, {ratio:.2f} x baseline: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
