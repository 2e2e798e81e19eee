"""`dspy-stream replay TRACE`: a run recorded with `--record`, played back in the dashboard or
headless, with no model, key or network."""

from __future__ import annotations

import argparse
import math
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from tui.config import ConfigError


def _speed(text: str) -> float:
    if text.strip().lower() in ("max", "inf"):
        return math.inf
    try:
        speed = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number such as 2, or max") from None
    if not math.isfinite(speed) or speed <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 (or max)")
    return speed


def build_parser() -> argparse.ArgumentParser:
    from tui.cli import _Parser

    p = _Parser(
        prog="dspy-stream replay",
        description="Play back a run recorded with --record, with its original timing; no model,"
        " key or network is used.",
    )
    p.add_argument("trace", type=Path, metavar="TRACE", help="a file written by --record (.gz too)")
    p.add_argument("--speed", type=_speed, default=1.0, help="faster than recorded: 2, 10, or max (1)")
    p.add_argument("--headless", action="store_true", help="answers to stdout, status to stderr")
    p.add_argument("--jsonl", action="store_true", help="headless stdout as JSON lines, one per event")
    p.add_argument("--report", type=Path, metavar="PATH", help="the replayed run's report, JSON or CSV")
    p.add_argument("--output", type=Path, metavar="PATH", help="write the answers to a file as they replay")
    p.add_argument(
        "--exit-when-done", action="store_true", help="dashboard: exit once every stream has replayed"
    )
    return p


def replay_main(argv: Sequence[str], err=None) -> int:
    from tui.cli import _report_error, check_output_paths
    from tui.output.guarded import GuardedOut

    err = err or GuardedOut(sys.stderr)
    try:
        args = build_parser().parse_args(list(argv))
        args.progress = None
        check_output_paths(args)
        if args.report is not None:
            from tui.report import report_format

            report_format(args.report)
        session = _open(args.trace, args.speed, err)
    except Exception as exc:
        return _report_error(exc, err)
    try:
        if args.headless or args.jsonl or not sys.stdout.isatty():
            code = _headless(args, session)
        else:
            from tui.app import run_dashboard

            code = run_dashboard(
                session, list(session.questions), output=args.output, exit_when_done=args.exit_when_done,
                schedule=session, keep_history=False, clock=session.clock,
            )  # fmt: skip
        if args.report is not None:
            from tui.report import write_report

            write_report(args.report, session)
        return code
    except Exception as exc:
        return _report_error(exc, err)


def _open(path: Path, speed: float, err):
    from tui.engine.replay import ReplaySession
    from tui.streaming.trace import TraceError, read_trace

    try:
        trace = read_trace(path)
    except TraceError as exc:
        raise ConfigError(str(exc)) from None
    if not trace.streams:
        raise ConfigError(f"{path}: the trace holds no stream: nothing to replay")
    if trace.cut_short:
        err.write(
            f"dspy-stream: note: {path} was cut short ({trace.cut_short}): it replays up to"
            f" {trace.ends_at:.1f} s, where the recording ends\n"
        )
    return ReplaySession(trace, speed=speed)


def _headless(args: argparse.Namespace, session) -> int:
    import asyncio

    from tui.cli import _until_signal
    from tui.exit_codes import EXIT_INTERRUPTED
    from tui.headless import HeadlessRun

    questions = list(session.questions)
    mode = session.trace.header.get("mode")
    mode = mode if mode in ("aggregate",) else ("concurrent" if len(questions) > 1 else "simple")
    run = HeadlessRun(
        session.settings, questions, mode, output=args.output, session=session, jsonl=args.jsonl,
        several=len(questions) > 1, schedule=session,
    )  # fmt: skip
    caught: list[int] = []
    try:
        code = asyncio.run(_until_signal(run, None, caught))
    except KeyboardInterrupt:
        caught.append(signal.SIGINT)
    if caught:
        run.end_lines()
        return EXIT_INTERRUPTED if caught[0] == signal.SIGINT else 128 + caught[0]
    return code
