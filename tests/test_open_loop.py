"""Open-loop load: `--request-rate` starts questions on a schedule, not as streams end.

A real headless process against the loopback server; the start times are the server's own
receive times, and the report's.
"""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import sys

import pytest

from tests.support.openai_server import Behaviour
from tests.test_cli import ROOT, on
from tests.test_robustness import _env
from tui.streaming.arrivals import Arrivals


def _questions(tmp_path, count: int):
    path = tmp_path / "questions.txt"
    path.write_text("".join(f"question {i}\n" for i in range(count)))
    return path


def test_200_questions_at_50_a_second_start_at_50_a_second(openai_server, tmp_path):
    openai_server.default = Behaviour(tokens=8, token_delay=0.01)
    report = tmp_path / "r.json"
    args = [*on(openai_server), "--questions", str(_questions(tmp_path, 200)), "--concurrency", "64"]
    args += ["--request-rate", "50", "--report", str(report)]
    done = subprocess.run(
        [sys.executable, "-m", "tui", *args], env=_env(tmp_path), cwd=ROOT, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    arrivals = sorted(r.received_at for r in openai_server.completions)
    assert len(arrivals) == 200
    measured = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert abs(measured - 50) / 50 <= 0.10, f"{measured:.1f} starts a second"
    data = json.loads(report.read_text())
    assert data["request_rate"] == 50 and data["burstiness"] == 1.0
    starts = sorted(data["start_times"])
    assert abs((len(starts) - 1) / (starts[-1] - starts[0]) - 50) / 50 <= 0.10
    # Open loop: the gaps vary as a Poisson process's do (closed loop would start 64 at once).
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert 0.6 < statistics.stdev(gaps) / statistics.mean(gaps) < 1.4


def test_closed_loop_reports_an_infinite_request_rate(openai_server, tmp_path):
    report = tmp_path / "r.json"
    args = [*on(openai_server), "one", "two", "--report", str(report)]
    done = subprocess.run(
        [sys.executable, "-m", "tui", *args], env=_env(tmp_path), cwd=ROOT, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(report.read_text())["request_rate"] == "inf"


@pytest.mark.parametrize("burstiness", [0.5, 1.0, 4.0])
def test_the_schedule_has_the_rate_and_the_gamma_shape(burstiness):
    arrivals = Arrivals(20, burstiness, seed=7)
    gaps = [arrivals.gap() for _ in range(1000)]
    assert statistics.mean(gaps) == pytest.approx(1 / 20, rel=1e-9)  # whole blocks: exact
    spread = statistics.stdev(gaps) / statistics.mean(gaps)
    assert spread == pytest.approx(burstiness**-0.5, rel=0.2)  # a gamma's CV is 1/sqrt(shape)


@pytest.mark.parametrize("flag", [["--request-rate", "0"], ["--request-rate", "nan"], ["--burstiness", "-1"]])
def test_a_bad_rate_is_one_line(flag, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tui", "--headless", *flag, "q"], env=_env(tmp_path), cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
