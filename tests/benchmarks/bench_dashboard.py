"""The dashboard under load: event-loop lag, CPU, memory and tokens shown, in a headless terminal.

    python -m tests.benchmarks.bench_dashboard               every case, each in a process of its own
    python -m tests.benchmarks.bench_dashboard 64x100        one case (32x50, 64x100, throughput)
    python -m tests.benchmarks.bench_dashboard --seconds 10  shorter paced runs

Each case runs the real app under `App.run_test(size=(200, 60))` against the loopback server in a
subprocess (`ServerProcess`), streaming through DSPy. Figures, for the client process only:
- lag: how late a task that sleeps 10 ms wakes up (p50, p99), while the streams run;
- CPU: process time / wall time (1.0 = one core);
- RSS peak: `ru_maxrss`, per case since each case has a process of its own;
- tokens: words the server sent, words the panes show at the end.
The throughput case streams 32 x 1,000 tokens unpaced, alternating with the best raw `dspy.streamify`
loop (`is_async_program=True`) in the same process; its ratio is raw time / dashboard time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dspy
from dspy.streaming import StreamResponse

from tests.benchmarks import API_KEY, bench_session, bench_settings, median, print_table, raw_lm, raw_stream
from tests.support.openai_server import ServerProcess
from tui.app import StreamDashboard
from tui.engine.remote import RemoteSession

SIZE = (200, 60)
LAG_PERIOD = 0.010
THROUGHPUT_STREAMS, THROUGHPUT_TOKENS, THROUGHPUT_ROUNDS, THROUGHPUT_TARGET = 32, 1000, 3, 0.8
MEMORY_TARGET_MB = 250
MEMORY_TARGET_MB_WITH_WORKERS = 400  # every process together
SHOWN_WITHIN = 1.05


@dataclass(frozen=True)
class PacedCase:
    streams: int
    tokens_per_s: float
    seconds: float
    lag_p99_target: float


PACED = {
    "32x50": PacedCase(32, 50, 20, 0.050),
    "64x100": PacedCase(64, 100, 30, 0.100),
}
CASES = (*PACED, "throughput")


@dataclass
class Result:
    case: str
    wall_s: float = 0.0
    cpu: float = 0.0
    lag_p50_ms: float = 0.0
    lag_p99_ms: float = 0.0
    lag_max_ms: float = 0.0
    rss_mb: float = 0.0
    produced: int = 0
    received: int = 0
    shown: int = 0
    lag_target_ms: float = 0.0
    seconds: float = 0.0
    raw_s: list[float] = field(default_factory=list)
    dashboard_s: list[float] = field(default_factory=list)


class LagMeter:
    """A task that sleeps `period` again and again and records how late it wakes up."""

    def __init__(self, period: float = LAG_PERIOD) -> None:
        self.period = period
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.period)
            self.lags.append(max(loop.time() - started - self.period, 0.0))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def percentile(self, share: float) -> float:
        ordered = sorted(self.lags) or [0.0]
        return ordered[min(int(share * len(ordered)), len(ordered) - 1)]


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def questions(count: int) -> list[str]:
    return [f"Question {i}: why stream answers token by token?" for i in range(count)]


WORKERS = 0  # --workers: 0 streams in this process; N in N worker processes


def dashboard(base_url: str, streams: int) -> StreamDashboard:
    settings = bench_settings(base_url, concurrency=streams, mode="concurrent", workers=WORKERS)
    if WORKERS:
        os.environ["OPENAI_API_KEY"] = API_KEY  # the workers build the LM from the settings
        session = RemoteSession(settings, workers=WORKERS)
    else:
        session = bench_session(base_url, concurrency=streams, mode="concurrent")
    return StreamDashboard(settings, session=session, steady=True)


def workers_rss_mb(app: StreamDashboard) -> float:
    """The peak resident memory of the worker processes, read before they end."""
    pool = getattr(app.session, "pool", None)
    total = 0.0
    for worker in pool.workers if pool is not None else ():
        try:
            status = Path(f"/proc/{worker.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


def shown_words(app: StreamDashboard) -> int:
    return sum(len(pane._answer_view.text.split()) for pane in app.dashboard.panes)


def everything_shown(app: StreamDashboard) -> bool:
    panes = app.dashboard.panes
    return bool(panes) and all(
        pane.terminal is not None
        and pane._finalised
        and pane._answer_view.text == pane.run.record.field_text("answer")
        for pane in panes
    )


async def stream_in_dashboard(base_url: str, count: int, timeout: float, meter: LagMeter | None = None):
    """Ask `count` questions in a fresh dashboard; wait until every answer is on screen.

    Returns (the app, wall seconds, CPU seconds) measured from the first question to the last word shown.
    """
    app = dashboard(base_url, count)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)  # the first frame and the clock are up
        if meter is not None:
            meter.start()
        started, cpu_started = time.perf_counter(), time.process_time()
        app.call_later(app.dashboard.ask, questions(count))
        deadline = started + timeout
        while not everything_shown(app):
            if time.perf_counter() > deadline:
                print(f"timed out after {timeout:.0f} s", file=sys.stderr)
                break
            await asyncio.sleep(0.02)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if meter is not None:
            meter.stop()
        snapshot = (
            shown_words(app),
            sum(pane.run.metrics.tokens for pane in app.dashboard.panes),
        )
        workers_mb = workers_rss_mb(app)
        await pilot.press("ctrl+q")  # every stream has ended: quits at once
    app.session.close()
    return snapshot, wall, cpu, workers_mb


async def paced(name: str, case: PacedCase) -> Result:
    tokens = int(case.tokens_per_s * case.seconds)
    with ServerProcess(tokens=tokens, tokens_per_s=case.tokens_per_s) as server:
        meter = LagMeter()
        (shown, received), wall, cpu, workers_mb = await stream_in_dashboard(
            server.base_url, case.streams, timeout=case.seconds * 3 + 30, meter=meter
        )
    return Result(
        case=f"{case.streams} x {case.tokens_per_s:g} tok/s, {case.seconds:g} s",
        wall_s=wall,
        cpu=cpu / wall,
        lag_p50_ms=meter.percentile(0.50) * 1000,
        lag_p99_ms=meter.percentile(0.99) * 1000,
        lag_max_ms=max(meter.lags, default=0.0) * 1000,
        rss_mb=rss_peak_mb() + workers_mb,
        produced=tokens * case.streams,
        received=received,
        shown=shown,
        lag_target_ms=case.lag_p99_target * 1000,
        seconds=case.seconds,
    )


async def best_raw_loop(base_url: str, count: int) -> int:
    """The baseline: every stream a task on one event loop, `is_async_program=True`."""

    async def one(question: str) -> int:
        stream = raw_stream(dspy.Predict("question -> answer"), is_async_program=True)
        received = 0
        async for value in stream(question=question):
            if isinstance(value, StreamResponse):
                received += 1
        return received

    with dspy.context(lm=raw_lm(base_url), adapter=dspy.ChatAdapter()):
        return sum(await asyncio.gather(*(one(q) for q in questions(count))))


async def throughput() -> Result:
    result = Result(case=f"{THROUGHPUT_STREAMS} x {THROUGHPUT_TOKENS} tokens unpaced")
    with ServerProcess(tokens=THROUGHPUT_TOKENS) as server:
        url = server.base_url
        await best_raw_loop(url, 2)  # warm up: imports, connections
        await stream_in_dashboard(url, 2, timeout=60)
        for round_number in range(THROUGHPUT_ROUNDS):
            # Alternate which goes first, so neither always meets a busier machine.
            for which in ("raw", "dashboard") if round_number % 2 == 0 else ("dashboard", "raw"):
                if which == "raw":
                    started = time.perf_counter()
                    await best_raw_loop(url, THROUGHPUT_STREAMS)
                    result.raw_s.append(time.perf_counter() - started)
                else:
                    meter = LagMeter()
                    (shown, received), wall, cpu, _ = await stream_in_dashboard(
                        url, THROUGHPUT_STREAMS, timeout=120, meter=meter
                    )
                    result.dashboard_s.append(wall)
                    result.shown, result.received = shown, received
                    result.cpu = cpu / wall
                    result.lag_p50_ms = meter.percentile(0.50) * 1000
                    result.lag_p99_ms = meter.percentile(0.99) * 1000
                    result.lag_max_ms = max(meter.lags, default=0.0) * 1000
    result.produced = THROUGHPUT_STREAMS * THROUGHPUT_TOKENS
    result.wall_s = median(result.dashboard_s)
    result.rss_mb = rss_peak_mb()
    return result


def run_case(name: str, seconds: float | None) -> Result:
    if name == "throughput":
        return asyncio.run(throughput())
    case = PACED[name]
    if seconds is not None:
        case = PacedCase(case.streams, case.tokens_per_s, seconds, case.lag_p99_target)
    return asyncio.run(paced(name, case))


def report(results: Sequence[Result]) -> None:
    rows, verdicts = [], []
    for r in results:
        ratio = ""
        if r.raw_s:
            ratio = median(r.raw_s) / median(r.dashboard_s)
            verdicts.append(
                f"throughput: raw {median(r.raw_s):.2f} s (min {min(r.raw_s):.2f}) vs dashboard"
                f" {median(r.dashboard_s):.2f} s (min {min(r.dashboard_s):.2f}): {ratio:.2f} x,"
                f" target >= {THROUGHPUT_TARGET} x: {'met' if ratio >= THROUGHPUT_TARGET else 'NOT met'};"
                f" all shown: {'yes' if r.shown == r.produced else 'NO'}"
            )
        else:
            memory = MEMORY_TARGET_MB_WITH_WORKERS if WORKERS else MEMORY_TARGET_MB
            # The provider is never slowed: every token is shown within the run's length plus 5 %.
            in_time = r.wall_s <= r.seconds * SHOWN_WITHIN
            met = r.lag_p99_ms <= r.lag_target_ms and r.shown == r.produced and r.rss_mb <= memory and in_time
            verdicts.append(
                f"{r.case}: lag p99 {r.lag_p99_ms:.0f} ms (target <= {r.lag_target_ms:.0f}),"
                f" RSS {r.rss_mb:.0f} MB (<= {memory}), shown {r.shown:,}/{r.produced:,}"
                f" in {r.wall_s:.1f} s (<= {r.seconds * SHOWN_WITHIN:.1f}): {'met' if met else 'NOT met'}"
            )
        rows.append(
            (
                r.case,
                r.wall_s,
                f"{r.cpu:.0%}",
                r.lag_p50_ms,
                r.lag_p99_ms,
                r.lag_max_ms,
                r.rss_mb,
                f"{r.produced:,}",
                f"{r.received:,}",
                f"{r.shown:,}",
                ratio,
            )
        )
    where = f"{WORKERS} worker processes" if WORKERS else "in the dashboard's process"
    print_table(
        f"Dashboard under load: run_test(size={SIZE}), DSPy streams {where}, against a server process",
        (
            "case",
            "wall s",
            "CPU",
            "lag p50 ms",
            "lag p99 ms",
            "lag max ms",
            "RSS MB",
            "sent",
            "received",
            "shown",
            "x raw",
        ),
        rows,
        notes=(
            "CPU: the dashboard process only (the server runs in another); 100% is one core.",
            "RSS: the dashboard process's peak, plus the workers' peaks when there are workers.",
            "sent: words the server streamed; received: tokens the core counted; shown: words on screen.",
            "x raw: the best raw streamify loop's median time over the dashboard's (higher is faster).",
            *verdicts,
        ),
    )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_dashboard")
    parser.add_argument("cases", nargs="*", help=f"which cases: {', '.join(CASES)} (all by default)")
    parser.add_argument("--seconds", type=float, help="length of the paced runs (20 and 30 by default)")
    parser.add_argument("--json", action="store_true", help="run one case here and print it as JSON")
    parser.add_argument(
        "--workers", type=int, default=0, help="streams in N worker processes (0, the default: in this one)"
    )
    args = parser.parse_args(argv)
    global WORKERS
    WORKERS = args.workers
    names = args.cases or list(CASES)
    if unknown := sorted(set(names) - set(CASES)):
        parser.error(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    if args.json:
        print(json.dumps(asdict(run_case(names[0], args.seconds))), flush=True)
        return 0
    results = []
    for name in names:  # each case in a fresh process: its own memory peak, no leftovers
        command = [sys.executable, "-m", "tests.benchmarks.bench_dashboard", name, "--json"]
        if args.seconds is not None:
            command += ["--seconds", str(args.seconds)]
        command += ["--workers", str(args.workers)]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        if done.returncode:
            print(f"case {name} failed (exit {done.returncode})", file=sys.stderr)
            continue
        results.append(Result(**json.loads(done.stdout.strip().splitlines()[-1])))
        print(f"{name}: done", file=sys.stderr, flush=True)
    report(results)
    return 0 if len(results) == len(names) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
