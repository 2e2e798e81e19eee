"""Headless runs: answers to stdout as they stream, status to stderr; the seed's four modes."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tui.config import Settings
from tui.exit_codes import EXIT_FAILED, EXIT_OK
from tui.streaming.aggregate import merge_streams
from tui.streaming.events import Cancelled, Done, Failed, Retrying, Status, StreamEvent, Token
from tui.streaming.runner import StreamRun
from tui.streaming.safe_text import hide_secrets, visible
from tui.streaming.session import StreamSession


def _answer_fields(run: StreamRun) -> tuple[str, ...]:
    """The fields headless prints on stdout: every streamed field that is not reasoning."""
    fields = tuple(f.key for f in run.info.outputs if f.streams and not f.reasoning)
    return fields or (run.info.final_output.key,)


class GuardedOut:
    """A stream that stops being written once writing fails (a closed pipe, a full disk).

    The run goes on without it, so the report and the history are still written.
    """

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.broken: OSError | None = None

    def write(self, text: str) -> int:
        if self.broken is None:
            try:
                self.out.write(text)
            except (OSError, ValueError) as exc:
                self._fail(exc)
        return len(text)

    def flush(self) -> None:
        if self.broken is None:
            try:
                self.out.flush()
            except (OSError, ValueError) as exc:
                self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.broken = exc if isinstance(exc, OSError) else OSError(str(exc))
        _silence(self.out)

    def isatty(self) -> bool:
        try:
            return self.out.isatty()
        except (OSError, ValueError):
            return False


def _silence(out: IO[str]) -> None:
    """Point a failed standard stream at /dev/null, so the interpreter's flush at exit stays quiet."""
    import os

    try:
        fd = out.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class TaggedWriter:
    """Writes tokens of one or many streams; with many, every line starts with its stream's tag.

    A token from another stream than the last one starts a new tagged line, so merged
    output stays readable and still shows each token the moment it arrives.
    """

    def __init__(self, out: IO[str], *, tagged: bool, safe: bool) -> None:
        self.out = out
        self.tagged = tagged
        self.safe = safe
        self._last_stream: int | None = None
        self._at_line_start = True
        self._pending: dict[int, str] = {}

    def write(self, stream_id: int, text: str) -> None:
        """Write up to the last whitespace; the word after it waits, so a key split across
        tokens is still whole when it is hidden."""
        text = self._pending.pop(stream_id, "") + text
        cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t")) + 1
        if cut < len(text):
            self._pending[stream_id] = text[cut:]
        if cut:
            self._emit(stream_id, text[:cut])

    def _flush_pending(self) -> None:
        for stream_id in list(self._pending):
            self._emit(stream_id, hide_secrets(self._pending.pop(stream_id)))

    def _emit(self, stream_id: int, text: str) -> None:
        text = hide_secrets(text)
        if self.safe:
            text = visible(text)
        if not self.tagged:
            self.out.write(text)
            self.out.flush()
            self._at_line_start = text.endswith("\n")
            return
        parts: list[str] = []
        if self._last_stream != stream_id and not self._at_line_start:
            parts.append("\n")
            self._at_line_start = True
        for piece in text.splitlines(keepends=True):
            if self._at_line_start:
                parts.append(f"[Stream {stream_id}] ")
            parts.append(piece)
            self._at_line_start = piece.endswith("\n")
        self.out.write("".join(parts))
        self.out.flush()
        self._last_stream = stream_id

    def end_line(self) -> None:
        self._flush_pending()
        if not self._at_line_start:
            self.out.write("\n")
            self.out.flush()
            self._at_line_start = True
            self._last_stream = None


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def status_line(run: StreamRun) -> str:
    m = run.metrics
    rate = m.tokens_per_s
    parts = [
        f"[{m.state}]",
        f"ttft {_seconds(m.ttft)}",
        f"{m.tokens} tokens",
        f"{rate:.1f} tok/s" if rate else "- tok/s",
        f"{_seconds(m.e2e)} total",
    ]
    if m.attempts > 1:
        parts.append(f"{m.attempts} attempts")
    if m.cache_hit:
        parts.append("cache hit")
    if m.error:
        parts.append(m.error)
    return " · ".join(parts)


@dataclass
class HeadlessRun:
    settings: Settings
    questions: list[str]
    mode: str
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    output: Path | None = None
    session: StreamSession | None = None

    def __post_init__(self) -> None:
        self.session = self.session or StreamSession(self.settings)
        self.stdout = GuardedOut(self.stdout)  # type: ignore[assignment]
        self._writers: list[TaggedWriter] = []
        self._printed: set[int] = set()
        self._safe = self.stdout.isatty()
        self._file: IO[str] | None = None
        self._file_writer: TaggedWriter | None = None
        self._context_open = False  # reasoning text on stderr that has not ended its line

    def _end_context(self) -> None:
        if self._context_open:
            self.stderr.write("\n\n")
            self._context_open = False

    def note(self, text: str) -> None:
        self._end_context()
        self.stderr.write(visible(hide_secrets(text)) + "\n")
        self.stderr.flush()

    def end_lines(self) -> None:
        """After an interrupt: end every open line, and print what unfinished answers had so far."""
        for writer in self._writers:
            writer.end_line()
        if self.mode == "concurrent" and self.session is not None:
            for run in self.session.runs:
                if run.job.stream_id not in self._printed and run.record.field_text("answer"):
                    self._print_answer(run)
        self.stdout.flush()

    def _to_file(self, stream_id: int, text: str) -> None:
        if self._file_writer is not None:
            self._file_writer.write(stream_id, text)

    async def run(self) -> int:
        assert self.session is not None
        if self.output is not None:
            self._file = self.output.open("w", encoding="utf-8")
            self._file_writer = TaggedWriter(self._file, tagged=len(self.questions) > 1, safe=False)
        try:
            if self.mode == "aggregate":
                await self._aggregate()
            elif self.mode == "concurrent":
                await self._concurrent()
            else:
                for question in self.questions:
                    await self._one_by_one(self.session.new_run(question))
        except asyncio.CancelledError:
            for run in self.session.runs:
                run.cancel()
            raise
        finally:
            if self._file_writer is not None:
                self._file_writer.end_line()
            if self._file is not None:
                self._file.close()
        self._print_summary()
        return EXIT_FAILED if any(isinstance(r.terminal, Failed) for r in self.session.runs) else EXIT_OK

    async def _one_by_one(self, run: StreamRun) -> None:
        """simple and recovery: the answer's tokens to stdout as they arrive; retries to stderr."""
        writer = TaggedWriter(self.stdout, tagged=False, safe=self._safe)
        self._writers.append(writer)
        if len(self.questions) > 1:
            self.note(f"Q{run.job.stream_id}: {run.job.question}")
        async for event in run.events():
            self._show(run, event, writer)
        writer.end_line()
        self.note(status_line(run))

    def _show(self, run: StreamRun, event: StreamEvent, writer: TaggedWriter) -> None:
        match event:
            case Token(field=name, text=text) if name in _answer_fields(run):
                self._end_context()
                if len(_answer_fields(run)) > 1 and getattr(self, "_answer_field", None) != name:
                    # A program with several answer fields: each under its name.
                    writer.end_line()
                    writer.write(run.job.stream_id, f"{name}: ")
                    self._answer_field = name
                writer.write(run.job.stream_id, text)
                self._to_file(run.job.stream_id, text)
            case Token(field=name, text=text):
                # Reasoning and other fields are context, not the answer: they go to stderr,
                # each under its name when a program streams several.
                if getattr(self, "_context_field", None) != name:
                    self._end_context()
                    self._context_field = name
                    if len(run.info.outputs) > 1:
                        self.stderr.write(f"[{name}] ")
                        text = text.lstrip("\n")
                self.stderr.write(visible(text))
                self.stderr.flush()
                self._context_open = True
            case Retrying(attempt=attempt, max_attempts=most, delay=delay, error=error, injected=injected):
                writer.end_line()
                label = " (injected)" if injected else ""
                self.note(
                    f"retry {attempt}/{most - 1} in {delay:.1f} s - {error}{label}; the answer restarts"
                )
            case Status(message=message) if message in ("queued", "loading model"):
                self.note(f"[{message}]")
            case Status(message=message, kind="tool" | "stage"):
                self._end_context()
                self._context_field = None
                self.note(message)
            case Failed(error=error):
                writer.end_line()
                self.note(f"error: {error}")
            case Cancelled():
                writer.end_line()
                self.note("cancelled")
            case Done(prediction=prediction):
                # Numbers, lists and models do not stream: they show with the Prediction.
                self._answer_field = None
                for output in run.info.outputs:
                    value = getattr(prediction, "get", lambda _n, _d=None: None)(output.name)
                    if not output.streams and value is not None:
                        writer.end_line()
                        writer.write(run.job.stream_id, f"{output.name}: {value}")

    async def _concurrent(self) -> None:
        """All questions at once (at most `concurrency` live); each answer printed whole when complete."""
        assert self.session is not None
        runs = [self.session.new_run(q) for q in self.questions]
        progress = asyncio.create_task(self._progress(runs)) if self.stderr.isatty() else None

        async def consume(run: StreamRun) -> None:
            async for event in run.events():
                if isinstance(event, Token) and event.field == run.info.final_output.key:
                    self._to_file(run.job.stream_id, event.text)
            self._clear_progress()
            self._print_answer(run)
            self.note(f"Q{run.job.stream_id} {status_line(run)}")

        try:
            await asyncio.gather(*(consume(run) for run in runs))
        finally:
            if progress is not None:
                progress.cancel()
                self._clear_progress()

    def _print_answer(self, run: StreamRun) -> None:
        self._printed.add(run.job.stream_id)
        self.stdout.write(f"Q{run.job.stream_id}: {visible(hide_secrets(run.job.question))}\n")
        answer = hide_secrets(run.record.field_text(run.info.final_output.key))
        self.stdout.write((visible(answer) if self._safe else answer) + "\n\n")
        self.stdout.flush()

    async def _aggregate(self) -> None:
        """Merged tokens of every stream in arrival order, each line tagged with its stream."""
        assert self.session is not None
        runs = [self.session.new_run(q) for q in self.questions]
        writer = TaggedWriter(self.stdout, tagged=True, safe=self._safe)
        self._writers.append(writer)
        async for tagged in merge_streams(runs, self.settings.buffer_size):
            event = tagged.event
            final = next(
                (r.info.final_output.key for r in runs if r.job.stream_id == tagged.stream_id), "answer"
            )
            if isinstance(event, Token) and event.field == final:
                writer.write(tagged.stream_id, event.text)
                self._to_file(tagged.stream_id, event.text)
            elif isinstance(event, Retrying):
                writer.end_line()
                self.note(f"[Stream {tagged.stream_id}] retry {event.attempt} - {event.error}")
            elif isinstance(event, Failed | Cancelled):
                writer.end_line()
                self.note(
                    f"[Stream {tagged.stream_id}] {type(event).__name__.lower()}: "
                    f"{getattr(event, 'error', '')}"
                )
        writer.end_line()

    async def _progress(self, runs: list[StreamRun]) -> None:
        started = time.monotonic()
        while True:
            done = sum(r.terminal is not None for r in runs)
            live = sum(r.metrics.live_tokens_per_s() for r in runs)
            elapsed = time.monotonic() - started
            eta = elapsed / done * (len(runs) - done) if done else None
            eta_text = f"ETA {eta:.0f} s" if eta is not None else "ETA -"
            width = 24
            filled = int(width * done / len(runs))
            bar = "=" * filled + ">" * (filled < width) + " " * (width - filled - 1)
            self.stderr.write(f"\r[{bar[:width]}] {done}/{len(runs)} · {live:.0f} tok/s · {eta_text}   ")
            self.stderr.flush()
            await asyncio.sleep(0.25)

    def _clear_progress(self) -> None:
        if self.stderr.isatty():
            self.stderr.write("\r\x1b[2K")
            self.stderr.flush()

    def _print_summary(self) -> None:
        assert self.session is not None
        s = self.session.summary()
        if s.streams < 2:
            return
        self.note(
            f"{s.streams} streams: {s.completed} done, {s.failed} failed, {s.cancelled} cancelled"
            f" · {s.total_tokens} tokens · {s.output_throughput:.0f} tok/s · {s.duration:.2f} s"
            f" · {s.retries} retries"
        )
