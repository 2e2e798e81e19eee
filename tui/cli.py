"""Command line: flags -> Settings -> the dashboard or a headless run; one-line errors; exit codes."""

from __future__ import annotations

import argparse
import asyncio
import io
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tui.config import ADAPTERS, MODES, PROGRAMS, ConfigError, Settings, load_settings
from tui.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE

if TYPE_CHECKING:
    from tui.headless import HeadlessRun
    from tui.questions import QuestionFeed
    from tui.streaming.session_base import SessionBase


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2, without the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


class _InOrder(argparse.Action):
    """`--program` and `--load` kept in the order given: a `--load` loads into the program before it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # type: ignore[override]
        order = list(getattr(namespace, "program_order", None) or [])
        order.append((self.dest, values))
        namespace.program_order = order


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="dspy-stream",
        description="Stream token-by-token answers from DSPy programs, in a dashboard or headless.",
        epilog="Settings also come from a TOML config file and DSPY_STREAM_* environment variables.\n\n"
        "Past runs:\n"
        "  dspy-stream history               list the runs kept in the history\n"
        "  dspy-stream history show RUN      one run's settings, figures and answers\n"
        "  dspy-stream history compare A B   two runs side by side\n"
        "  dspy-stream replay TRACE [--speed 2|max]   play back a run recorded with --record",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("questions", nargs="*", metavar="QUESTION", help="questions to ask")
    p.add_argument(
        "--questions",
        dest="questions_file",
        type=Path,
        metavar="FILE",
        help="a file of questions: one a line, or JSONL with a 'question' key",
    )
    p.add_argument("--mode", choices=MODES, help="simple | concurrent | aggregate | recovery | demo")
    p.add_argument(
        "--program",
        metavar="PROGRAM",
        action=_InOrder,
        help=f"{', '.join(PROGRAMS)} (react needs --tools), path/to/file.py:NAME or package.module:NAME "
        "(a dspy.Module instance, a Module subclass, or a function of no arguments returning one;"
        " path/to/file.py alone: the one program the file defines);"
        " give several to compare them",
    )
    p.add_argument(
        "--signature",
        metavar="SIG",
        help='the built-in program\'s DSPy signature, e.g. "context, question -> answer, confidence: float"',
    )
    p.add_argument("--instructions", metavar="TEXT", help="the signature's instruction (its docstring)")
    p.add_argument("--tools", metavar="FILE.py", help="react's tools: every public function of FILE.py")
    p.add_argument(
        "--load",
        metavar="STATE",
        action=_InOrder,
        help="saved state (Module.save(...json)) to load into the program before it: optimized demos and"
        " instructions; give several to compare them",
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        default=None,
        help="allow --load of a .pkl state or a whole saved program directory (save_program=True): "
        "pickle runs code, so only for files you trust",
    )
    p.add_argument(
        "--input",
        dest="inputs",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a value for one input field of the program (NAME=@file reads a file); repeat per field",
    )
    p.add_argument(
        "--model",
        action="append",
        help="a dspy.LM model string (openai/gpt-4o-mini, anthropic/...), "
        "'local' for the embedded model (default), or local:/path/model.gguf; give several to compare"
        " them: each question runs on every model (and every --program)",
    )
    p.add_argument("--api-base", help="the base URL of an OpenAI-compatible server")
    p.add_argument("--adapter", choices=ADAPTERS, help="chat (hosted default), json, or plain (small models)")
    p.add_argument("--buffer-size", help="events buffered per stream before the producer waits (100)")
    p.add_argument("--max-retries", help="retries after a transient failure (3)")
    p.add_argument("--retry-delay", help="first backoff delay in seconds, doubled each retry (2)")
    p.add_argument("--timeout", help="most seconds to wait for the first token or between two (60)")
    p.add_argument("--concurrency", help="most streams live at once (8)")
    p.add_argument(
        "--workers",
        help="processes DSPy runs in (default: one per usable core; the embedded model uses one);"
        " 0 runs it in this process, for debugging",
    )
    p.add_argument("--max-tokens", help="most tokens per answer")
    p.add_argument("--temperature", help="sampling temperature")
    p.add_argument("--fault-rate", help="share of attempts that fail on purpose in recovery mode (0.3)")
    p.add_argument("--repeat", help="run the set of questions this many times (1)")
    p.add_argument("--slo", help="goodput targets, e.g. ttft=500ms,tpot=50ms")
    p.add_argument(
        "--request-rate",
        metavar="R",
        help="open loop: start questions as a Poisson process at R a second, as vllm bench serve does"
        " (--concurrency still caps the streams live at once); default: a question starts as one ends",
    )
    p.add_argument(
        "--burstiness",
        metavar="B",
        help="with --request-rate: the gamma shape of the gaps between starts (1 Poisson, <1 burstier)",
    )
    p.add_argument("--cache", action="store_true", default=None, help="use DSPy's cache (hits do not stream)")
    p.add_argument(
        "--output",
        type=Path,
        metavar="PATH",
        help="write the answers to a file as they stream, as headless stdout shows them (dashboard too)",
    )
    p.add_argument(
        "--exit-when-done",
        action="store_true",
        help="dashboard: once every question given at start has ended, write the report and history"
        " and exit with the headless exit codes (watch a batch live, still end by itself)",
    )
    p.add_argument(
        "--jsonl",
        action="store_true",
        help="headless stdout as JSON lines: one object per event of each stream, for other programs",
    )
    p.add_argument("--report", type=Path, metavar="PATH", help="write metrics as JSON (.json) or CSV (.csv)")
    p.add_argument(
        "--record",
        type=Path,
        metavar="TRACE",
        help="write everything the run streams, as it arrives, to TRACE (JSONL; gzip if it ends in .gz)"
        " for `dspy-stream replay TRACE`",
    )
    p.add_argument(
        "--progress", type=Path, metavar="PATH", help="append running figures as JSONL each second"
    )
    p.add_argument("--config", type=Path, metavar="PATH", help="a TOML config file to use")
    p.add_argument(
        "--headless", action="store_true", help="no dashboard: answers to stdout, status to stderr"
    )
    p.add_argument("--version", action="version", version=_version())
    return p


def _version() -> str:
    from tui import __version__

    return f"dspy-stream {__version__}"


SETTING_FLAGS = (
    "mode", "program", "signature", "instructions", "tools", "load", "allow_pickle",
    "model", "api_base", "adapter", "buffer_size", "max_retries", "retry_delay",
    "timeout", "concurrency", "workers", "max_tokens", "temperature", "fault_rate", "repeat", "slo", "cache",
    "request_rate", "burstiness",
)  # fmt: skip


def parse_inputs(pairs: Sequence[str], configured: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """`--input NAME=VALUE` values over the configured ones; `NAME=@file` reads the file."""
    inputs: dict[str, str] = {}
    for pair in [f"{name}={value}" for name, value in configured] + list(pairs):
        name, equals, value = pair.partition("=")
        name = name.strip()
        if not equals or not name.isidentifier():
            raise ConfigError(
                f'--input {pair!r}: write NAME=VALUE or NAME=@file, e.g. --input question="Why?"'
            )
        if value.startswith("@"):
            path = Path(value[1:])
            try:
                value = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ConfigError(f"--input {name}=@{path}: no such file") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"--input {name}=@{path}: cannot be read ({exc})") from None
        inputs[name] = value
    return inputs


def gather_questions(
    args: argparse.Namespace, settings: Settings, err: IO[str], fields: tuple[str, ...]
) -> QuestionFeed:
    """Questions (text, or one value per input field) from the command line and the questions
    file, `repeat` times over, read as they are asked."""
    from tui.questions import Problem, QuestionFeed, QuestionsFileError, iter_questions

    asked: list = [q for q in args.questions]
    if any(not q.strip() for q in asked):
        raise ConfigError('a question is empty: give some text, e.g. dspy-stream "What is Rust?"')
    given = parse_inputs(getattr(args, "inputs", []) or [], settings.inputs)
    unknown = [name for name in given if name not in fields]
    if unknown:
        raise ConfigError(f"--input {unknown[0]}: the program's inputs are {', '.join(fields)}")
    by_field = bool(given) or len(fields) > 1
    if by_field:
        asked = _fill_inputs(asked, given, fields)
    path = args.questions_file

    def one_pass(first: bool) -> Iterator:
        yield from asked
        if path is None:
            return
        try:
            for item in iter_questions(path, input_fields=fields):
                if isinstance(item, Problem):
                    if first:  # said once, not once a repeat
                        err.write(f"dspy-stream: warning: {item}\n")
                elif by_field:
                    yield {**given, **item.inputs}
                else:
                    yield item.text
        except QuestionsFileError:
            if first:
                raise
            # A pipe is read once: its questions were asked once.

    total = len(asked) * settings.repeat if path is None else None
    feed = QuestionFeed(one_pass, settings.repeat, total=total)
    if settings.mode == "demo" and not feed:
        from tui.demo import DEMO_QUESTIONS

        feed = QuestionFeed(
            lambda _first: DEMO_QUESTIONS, settings.repeat, total=len(DEMO_QUESTIONS) * settings.repeat
        )
    return feed


def _fill_inputs(questions: list, given: dict[str, str], fields: tuple[str, ...]) -> list:
    """Each positional question fills the one input field `--input` left open; with all of
    them given, `--input` alone is one stream."""
    missing = [name for name in fields if name not in given]
    if not questions:
        if given and missing:
            raise ConfigError(f"no value for {', '.join(missing)}: add --input {missing[0]}=...")
        return [dict(given)] if given else []
    if len(missing) != 1:
        if not missing:
            raise ConfigError("every input field is given with --input: drop the question arguments")
        raise ConfigError(f"the program's inputs are {', '.join(fields)}: give them with --input NAME=VALUE")
    return [{**given, missing[0]: q} for q in questions]


def _resolve_mode(settings: Settings, questions: QuestionFeed) -> str:
    if settings.mode in ("simple", "recovery", "concurrent", "aggregate"):
        return settings.mode
    return "concurrent" if questions.several else "simple"


# The dashboard makes a pane a stream; past this many, headless is the way to run a batch.
DASHBOARD_MOST_QUESTIONS = 10_000


def dashboard_questions(questions: QuestionFeed) -> list:
    """The questions the dashboard asks at start, all read now: its panes need them."""
    from itertools import islice

    asked = list(islice(questions, DASHBOARD_MOST_QUESTIONS + 1))
    if len(asked) > DASHBOARD_MOST_QUESTIONS:
        raise ConfigError(
            f"more than {DASHBOARD_MOST_QUESTIONS:,} questions for the dashboard: run them with --headless"
        )
    return asked


def main(argv: Sequence[str] | None = None) -> int:
    from tui.logs import quiet_environment

    quiet_environment()
    from tui.output.guarded import GuardedOut

    err = GuardedOut(sys.stderr)  # a terminal that hung up must not lose the report
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["history"]:
        from tui.history_cli import history_main

        return history_main(argv[1:])
    if argv[:1] == ["replay"]:
        from tui.replay_cli import replay_main

        return replay_main(argv[1:], err)
    try:
        args = build_parser().parse_args(argv)
        settings, variants = settings_of(args)
        session = open_session(settings, variants)
    except Exception as exc:
        return _report_error(exc, err)
    trace = None
    try:
        check_before_run(args, settings)
        trace = start_trace(args, settings, session)
        session.expect(expected_streams(args, settings))  # a batch's workers load together
        if args.headless or args.jsonl or not sys.stdout.isatty():
            questions = gather_questions(args, settings, err, session.program_info.inputs)
            if not questions:
                raise ConfigError('no question given: pass one, e.g. dspy-stream --headless "What is Rust?"')
            code = _run(args, settings, questions, session)
        else:
            code = _run_dashboard(args, settings, session, err)
        _leave_the_heap_to_exit()
        return code
    except KeyboardInterrupt:
        err.write("dspy-stream: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _report_error(exc, err)
    finally:
        if trace is not None:
            session.unwatch(trace)
            trace.close()
            if trace.broken is not None:
                err.write(f"dspy-stream: warning: --record {trace.path} stopped: {trace.broken}\n")
        session.close()


def start_trace(args: argparse.Namespace, settings: Settings, session: SessionBase):
    """`--record`: the trace follows every stream from the first."""
    if args.record is None:
        return None
    from tui.streaming.trace import TraceWriter

    try:
        trace = TraceWriter(args.record, session, settings.mode)
    except OSError as exc:
        raise ConfigError(f"--record {args.record} cannot be written: {exc.strerror or exc}") from None
    session.watch(trace)
    return trace


def settings_of(args: argparse.Namespace) -> tuple[Settings, list[Settings]]:
    """The run's settings (its first variant's), and every variant's when there are several."""
    from tui.streaming.variants import program_choices, variant_settings

    flags = {name: getattr(args, name) for name in SETTING_FLAGS}
    order = list(getattr(args, "program_order", None) or [])
    models = list(args.model or [])
    flags["model"] = models[0] if models else None
    flags["program"] = next((value for option, value in order if option == "program"), None)
    flags["load"] = next((value for option, value in order if option == "load"), None)
    settings = load_settings(flags, config_path=args.config)
    if len(models) < 2 and len(order) < 2:
        return settings, [settings]
    return settings, variant_settings(settings, models, program_choices(order))


def open_session(settings: Settings, variants: Sequence[Settings] = ()) -> SessionBase:
    """Where this run's streams run: worker processes (this process never imports DSPy), or this
    process with `--workers 0`; one session per variant when there are several. Logging goes to
    its file first, or the log directory is refused."""
    if settings.workers == 0:
        from tui.models.dspy_import import import_dspy

        import_dspy()
    _route_logs()
    if len(variants) < 2:
        session = _one_session(settings, settings.workers)
        if settings.workers == 0 and not settings.is_local:  # the embedded model loads later
            session.configure_for_plain_threads()  # type: ignore[attr-defined]
        return session
    from tui.streaming.variants import VariantSession, variant_labels

    workers = settings.workers
    if workers is None:
        from tui.engine.pool import default_workers

        workers = default_workers()
    each = 0 if workers == 0 else max(1, workers // len(variants))
    labels = variant_labels(variants)
    children = [(label, _one_session(s, each)) for label, s in zip(labels, variants, strict=True)]
    return VariantSession(settings, children)


def _one_session(settings: Settings, workers: int | None) -> SessionBase:
    if workers == 0:
        from tui.streaming.session import StreamSession

        return StreamSession(settings)
    from tui.engine.remote import RemoteSession

    return RemoteSession(settings, workers=workers)


def _route_logs() -> None:
    from tui.logs import send_logs_to_file

    try:
        send_logs_to_file()
    except OSError as exc:
        from tui.logs import log_path

        raise ConfigError(
            f"log directory {log_path().parent} cannot be written: {exc.strerror or exc}"
            " (set XDG_STATE_HOME to move it)"
        ) from None


def _leave_the_heap_to_exit() -> None:
    """The interpreter's last collections walk DSPy's and LiteLLM's whole heap at exit: ~2 s
    between the last line and the shell prompt, and after Ctrl+C. Frozen, it is only freed."""
    import gc

    gc.freeze()


def _report_error(exc: BaseException, err: IO[str]) -> int:
    import logging

    from tui.models.errors import ModelError
    from tui.questions import QuestionsFileError
    from tui.streaming.faults import redact
    from tui.streaming.session_base import EmptyQuestion, MissingInputs

    expected = (ConfigError, ModelError, QuestionsFileError, EmptyQuestion, MissingInputs, OSError)
    if isinstance(exc, ServerUnreachable):
        err.write(f"dspy-stream: error: {redact_line(str(exc))}\n")
        return EXIT_FAILED
    if isinstance(exc, expected):
        err.write(f"dspy-stream: error: {redact(str(exc))}\n")
        return EXIT_USAGE
    logging.getLogger("tui").exception("unexpected failure")
    err.write(f"dspy-stream: error: {type(exc).__name__}: {redact(str(exc))} (details in the log file)\n")
    return EXIT_FAILED


class ServerUnreachable(Exception):
    """--api-base names a server that refuses connections or does not resolve (exit 1)."""


def check_before_run(args: argparse.Namespace, settings: Settings) -> None:
    """Bad report names, output paths and targets fail here, in one line, before anything runs."""
    from tui.report import parse_slo, report_format

    if args.report is not None:
        report_format(args.report)
    check_output_paths(args)
    if settings.slo:
        parse_slo(settings.slo)


def expected_streams(args: argparse.Namespace, settings: Settings) -> int:
    """How many streams the command line runs at once, as far as it says before the program is
    loaded (with a questions file: as many as `concurrency` allows)."""
    if args.questions_file is not None:
        return settings.concurrency
    return min(settings.concurrency, len(args.questions) * settings.repeat)


def check_program(settings: Settings, session: SessionBase) -> None:
    """The program and model load (in a worker), and the server answers, or the run ends here."""
    session.ensure_program()
    session.ensure_model()
    unreachable = unreachable_server(settings)
    if unreachable:
        raise ServerUnreachable(unreachable)


def _run_dashboard(args: argparse.Namespace, settings: Settings, session: SessionBase, err: IO[str]) -> int:
    """The first frame shows while the worker loads DSPy, the program and the model; a bad one
    still ends the dashboard as one line and exit 2 before any question runs."""
    from tui.app import run_dashboard

    warnings = io.StringIO()

    def prepare() -> list:
        check_program(settings, session)
        return dashboard_questions(gather_questions(args, settings, warnings, session.program_info.inputs))

    try:
        code = run_dashboard(
            session, [], prepare=prepare, output=args.output, exit_when_done=args.exit_when_done
        )
    finally:
        err.write(warnings.getvalue())
    _write_report(args, session)
    return code


def _run(args: argparse.Namespace, settings: Settings, questions: QuestionFeed, session: SessionBase) -> int:
    check_program(settings, session)
    from tui.headless import HeadlessRun
    from tui.history import begin_recording

    mode = _resolve_mode(settings, questions)
    # Questions are read as they are asked: the history keeps the streams started, no plan.
    history, recorder = begin_recording(session, mode, (), sys.stderr)
    run = HeadlessRun(
        settings, questions, mode, output=args.output, session=session,
        jsonl=args.jsonl, several=questions.several or bool(session.variants),
    )  # fmt: skip
    caught: list[int] = []
    try:
        code = asyncio.run(_until_signal(run, args.progress, caught))
    except KeyboardInterrupt:
        caught.append(signal.SIGINT)
    interrupted = bool(caught)
    if interrupted:
        code = EXIT_INTERRUPTED if caught[0] == signal.SIGINT else 128 + caught[0]
        run.end_lines()
        name = signal.Signals(caught[0]).name
        what = "interrupted" if caught[0] == signal.SIGINT else f"stopped by {name}"
        sys.stderr.write(f"dspy-stream: {what}; partial answers kept\n")
    if recorder is not None and history is not None:
        recorder.finish(interrupted=interrupted)
        history.close()
    _write_report(args, session)
    return code


# Signals that end a run: streams cancelled, what arrived written out, kept and saved.
ENDING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_reason(signum: int) -> str:
    return "interrupted" if signum == signal.SIGINT else signal.Signals(signum).name


async def _until_signal(run: HeadlessRun, progress_path: Path | None, caught: list[int]) -> int:
    """Run headless; Ctrl+C, SIGTERM or SIGHUP cancel the run (recorded in `caught`), so every
    stream ends with its last words written; a second signal stops the wait for them."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None

    def stop(signum: int) -> None:
        if not caught:
            caught.append(signum)
            run.stopping(stop_reason(signum))
        main.cancel()

    for signum in ENDING_SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await _with_progress(run, progress_path)
    except asyncio.CancelledError:
        if caught:
            return 128 + caught[0]
        raise
    finally:
        for signum in ENDING_SIGNALS:
            loop.remove_signal_handler(signum)


async def _with_progress(run: HeadlessRun, progress_path: Path | None) -> int:
    """Run headless; with --progress, append the running figures to a JSONL file every second."""
    from tui.report import progress_writer

    assert run.session is not None
    writer = asyncio.create_task(progress_writer(progress_path, run.session)) if progress_path else None
    try:
        return await run.run()
    finally:
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)


def _write_report(args: argparse.Namespace, session) -> None:
    if args.report is None:
        return
    from tui.report import write_report

    write_report(args.report, session)


def _writable(path: Path, option: str) -> None:
    """Fail now, in one line naming the option, if `path` cannot be written later."""
    import os
    import tempfile

    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a directory; give a file name")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with path.open("a", encoding="utf-8"):
                pass
        else:
            handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
            os.close(handle)
            os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{option} {path} cannot be written: {exc.strerror or exc}") from None


def check_output_paths(args: argparse.Namespace) -> None:
    """--report, --output and --progress are checked before the first request, not after the run."""
    paths = {"--report": args.report, "--output": args.output, "--progress": args.progress}
    paths["--record"] = getattr(args, "record", None)
    given = {option: path for option, path in paths.items() if path is not None}
    seen: dict[Path, str] = {}
    for option, path in given.items():
        key = path.expanduser().resolve()
        if key in seen:
            raise ConfigError(f"{option} {path} is the same file as {seen[key]}: give each its own file")
        seen[key] = option
        _writable(path, option)


def redact_line(text: str) -> str:
    from tui.streaming.safe_text import hide_secrets

    return hide_secrets(text)


def unreachable_server(settings: Settings, timeout: float = 1.5) -> str | None:
    """Why a refused or unresolvable --api-base cannot work, found before the first question."""
    import socket
    from urllib.parse import urlsplit

    if settings.is_local or not settings.api_base:
        return None
    parts = urlsplit(settings.api_base)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConfigError(f"api_base {parts.scheme}://{host}: the port is not a number") from None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return None  # slow, not refused: the run's own timeout and retries deal with it
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return (
            f"the server at {parts.scheme}://{host}:{port} cannot be reached ({reason}): "
            "is it running, and is --api-base right?"
        )
