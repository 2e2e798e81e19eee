"""Headless runs: answers to stdout as they stream, status to stderr.

One question streams its answer's tokens raw, as `llm` does. Several stream as `docker
compose logs` shows services: each stream's lines as they complete, after its tag (`[2] `),
started as the questions are read, so a huge batch costs the memory of the live streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Iterable, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tui.config import Settings
from tui.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from tui.output.answers import AnswerFile, RawAnswer, answer_fields, answer_writer, stream_tag, wants_colour
from tui.output.guarded import GuardedOut
from tui.questions import QuestionsFileError
from tui.streaming.arrivals import Arrivals, Schedule
from tui.streaming.events import Cancelled, Done, Failed, Retrying, Status, StreamEvent, Token
from tui.streaming.metrics import RunSummary
from tui.streaming.safe_text import hide_secrets, visible
from tui.streaming.session_base import LiveStream as StreamRun
from tui.streaming.session_base import SessionBase
from tui.streaming.status_line import StatusFacts, plain_status_line, retry_text

__all__ = ["EXIT_OK", "GuardedOut", "HeadlessRun", "status_line"]

# How long stopped streams get to end with their `Cancelled` event (their last words) before exit.
STOP_GRACE_S = 0.5
SEQUENTIAL_MODES = ("simple", "recovery")
_NO_MORE = object()


def status_line(run: StreamRun) -> str:
    """`[done] · 60 tok · 30.0 tok/s · TTFT 0.14s · 2.21s`: the pane's status line, as it ends.

    A failed stream says why after its figures.
    """
    metrics = run.metrics
    line = plain_status_line(StatusFacts(metrics.state, metrics, max_attempts=run.settings.max_retries + 1))
    return f"{line} · {metrics.error}" if metrics.state == "failed" and metrics.error else line


def summary_line(s: RunSummary) -> str:
    return (
        f"{s.streams} streams: {s.completed} done, {s.failed} failed, {s.cancelled} cancelled"
        f" · {s.total_tokens} tokens · {s.output_throughput:.0f} tok/s · {s.duration:.2f} s"
        f" · {s.retries} retries"
    )


def retry_note(event: Retrying) -> str:
    return f"{retry_text(event, event.delay).rstrip('.')}; the answer restarts"


@dataclass
class HeadlessRun:
    """`questions` may be any iterable (a lazily read file): streams start as it yields them.

    `several` says whether more than one question comes (tagged lines); by default a sized
    `questions` tells.
    """

    settings: Settings
    questions: Iterable
    mode: str
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    output: Path | None = None
    session: SessionBase | None = None  # required: where the streams run
    jsonl: bool = False
    several: bool | None = None
    # When each question starts (`wait_turn()` before each): open-loop arrivals, a replay's
    # recorded starts; None: as a slot frees.
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        if self.session is None:
            raise TypeError("HeadlessRun needs the session its streams run in")
        if self.several is None:
            self.several = not isinstance(self.questions, Sized) or len(self.questions) > 1
        if self.session.variants:
            self.several = True  # each question streams once per variant: tagged lines
        self.stdout = GuardedOut(self.stdout)  # type: ignore[assignment]
        self._safe = self.stdout.isatty()
        self._raw = not self.several and not self.jsonl
        self.answers = answer_writer(
            self.stdout, several=bool(self.several), jsonl=self.jsonl, colour=wants_colour(self.stdout),
            safe=self._safe, before_write=self._clear_progress,
        )  # fmt: skip
        self._note_colour = wants_colour(self.stderr)
        self._file: AnswerFile | None = None
        self._context_open = False  # reasoning text on stderr that has not ended its line
        self._context_field: str | None = None
        self._progress_shown = False
        self.feed_error: str | None = None  # the questions file failed midway: no more streams
        self.stopped_by: str | None = None

    # -- stderr -----------------------------------------------------------------------------

    def _end_context(self) -> None:
        if self._context_open:
            self.stderr.write("\n\n")
            self._context_open = False

    def note(self, text: str, run: StreamRun | None = None) -> None:
        self._end_context()
        self._clear_progress()
        tag = stream_tag(run.job, colour=self._note_colour) if run is not None else ""
        self.stderr.write(tag + visible(hide_secrets(text)) + "\n")
        self.stderr.flush()

    # -- the run ----------------------------------------------------------------------------

    def end_lines(self) -> None:
        """After an interrupt: every stream's last words, and every open line ended."""
        self.answers.close()
        self.stdout.flush()

    async def run(self) -> int:
        assert self.session is not None
        session = self.session
        if self.output is not None:
            self._file = AnswerFile(self.output, several=bool(self.several), jsonl=self.jsonl)
            session.watch(self._file)
        if not self._raw:
            session.watch(self.answers)
        try:
            if self._raw:
                for question in self.questions:
                    await self._one_by_one(session.new_run(question))
            else:
                slots = 1 if self.mode in SEQUENTIAL_MODES else self.settings.concurrency
                await self._batch(slots)
        finally:
            self.answers.close()
            if self._file is not None:
                session.unwatch(self._file)
                self._file.close()
                if self._file.broken is not None:
                    self.note(f"warning: --output {self.output} could not be written: {self._file.broken}")
            if not self._raw:
                session.unwatch(self.answers)
        self._print_summary()
        if self.feed_error is not None:
            return EXIT_USAGE
        return EXIT_FAILED if any(isinstance(r.terminal, Failed) for r in session.runs) else EXIT_OK

    def stopping(self, reason: str) -> None:
        """Called as a signal stops the run: cancelled streams end for this reason."""
        self.stopped_by = reason
        for writer in (self.answers, getattr(self._file, "writer", None)):
            if writer is not None and hasattr(writer, "reason"):
                writer.reason = reason  # type: ignore[union-attr]

    async def _one_by_one(self, run: StreamRun) -> None:
        """One question: the answer's tokens to stdout as they arrive; the rest to stderr."""
        assert isinstance(self.answers, RawAnswer)
        self.answers.started(run)
        try:
            async for event in run.events():
                self._show(run, event)
        except asyncio.CancelledError:
            run.cancel()

            async def last_words() -> None:
                async for event in run.events():
                    self._show(run, event)

            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(last_words(), STOP_GRACE_S)
            raise
        self.note(status_line(run))

    def _show(self, run: StreamRun, event: StreamEvent) -> None:
        assert isinstance(self.answers, RawAnswer)
        if (isinstance(event, Token) and event.field in answer_fields(run)) or isinstance(
            event, Done | Failed | Cancelled | Retrying
        ):
            self._end_context()
        self.answers.feed(run, event)
        match event:
            case Token(field=name, text=text) if name not in answer_fields(run):
                # Reasoning and other fields are context, not the answer: they go to stderr,
                # each under its name when a program streams several.
                if self._context_field != name:
                    self._end_context()
                    self._context_field = name
                    if len(run.info.outputs) > 1:
                        self.stderr.write(f"[{name}] ")
                        text = text.lstrip("\n")
                self.stderr.write(visible(hide_secrets(text)))
                self.stderr.flush()
                self._context_open = True
            case Retrying():
                self.note(retry_note(event))
            case Status(message=message) if message in ("queued", "loading model"):
                self.note(f"[{message}]")
            case Status(message=message, kind="tool" | "stage" | "output"):
                self._context_field = None
                self.note(message)
            case Failed(error=error):
                self.note(f"error: {error}")
            case Cancelled():
                self.note("cancelled")

    async def _batch(self, slots: int) -> None:
        """Several questions, at most `slots` streams live; a stream starts as a slot frees.

        Questions are read one at a time as they are asked, so neither a huge file nor a
        huge `--repeat` is held in memory, and a stop is felt within a second.
        """
        assert self.session is not None
        live: set[asyncio.Task[None]] = set()
        arrivals = self.schedule
        if arrivals is None and self.settings.request_rate is not None and self.mode not in SEQUENTIAL_MODES:
            # Open loop: questions start on their schedule; the session's limit still caps the
            # streams live at once, and those over it wait their turn as queued.
            arrivals = Arrivals(self.settings.request_rate, self.settings.burstiness)
        if arrivals is not None:
            slots = sys.maxsize
        free = asyncio.Semaphore(slots)
        progress = asyncio.create_task(self._progress()) if self.stderr.isatty() else None
        questions = iter(self.questions)
        # A file is read in a thread: a slow pipe (`--questions /dev/stdin`) must not stop the
        # live streams, nor their stall timers, while it waits for its next line.
        in_memory = isinstance(self.questions, list | tuple)
        try:
            while True:
                await free.acquire()
                try:
                    if in_memory:
                        question = next(questions, _NO_MORE)
                    else:
                        question = await asyncio.to_thread(next, questions, _NO_MORE)
                except QuestionsFileError as exc:
                    self.feed_error = str(exc)
                    self.note(f"error: {exc}; no more questions are asked")
                    break
                if question is _NO_MORE:
                    break
                if arrivals is not None:
                    await arrivals.wait_turn()
                runs = self.session.new_runs(question)
                task = asyncio.create_task(self._follow_all(runs), name=f"headless-{runs[0].job.stream_id}")
                live.add(task)

                def ended(task: asyncio.Task[None]) -> None:
                    live.discard(task)
                    free.release()

                task.add_done_callback(ended)
                await asyncio.sleep(0)  # let a stop in, however fast the questions come
            if live:
                await asyncio.wait(set(live))
        except asyncio.CancelledError:
            await self._drain([r for r in self.session.runs if r.terminal is None], set(live))
            raise
        finally:
            if progress is not None:
                progress.cancel()
                await asyncio.gather(progress, return_exceptions=True)
            self._clear_progress()

    async def _drain(self, runs: list[StreamRun], consumers: set[asyncio.Task[None]]) -> None:
        """Cancel `runs` and give them a moment to end with their `Cancelled` event, so their
        last words reach stdout and the files."""
        for run in runs:
            run.cancel()
        if consumers:
            with contextlib.suppress(asyncio.CancelledError):  # a second signal: no more waiting
                await asyncio.wait(consumers, timeout=STOP_GRACE_S)
        for task in consumers:
            task.cancel()

    async def _follow_all(self, runs: list[StreamRun]) -> None:
        """One question's streams (one per variant), followed together: its slot frees once all end."""
        if len(runs) == 1:
            await self._follow(runs[0])
        else:
            await asyncio.gather(*(self._follow(run) for run in runs))

    async def _follow(self, run: StreamRun) -> None:
        """One of several streams: its answer goes to stdout through the session's writers."""
        async for event in run.events():
            match event:
                case Retrying():
                    self.note(retry_note(event), run)
                case Status(message=message, kind="tool" | "stage" | "output"):
                    self.note(message, run)
                case Done() | Failed() | Cancelled():
                    self.note(status_line(run), run)

    async def _progress(self) -> None:
        assert self.session is not None
        runs = self.session.runs
        started = time.monotonic()
        total = (
            len(self.questions)
            if isinstance(self.questions, Sized)
            else getattr(self.questions, "total", None)
        )
        while True:
            done = sum(r.terminal is not None for r in runs)
            live = sum(r.metrics.live_tokens_per_s() for r in runs if r.terminal is None)
            elapsed = time.monotonic() - started
            if total:
                eta = elapsed / done * (total - done) if done else None
                eta_text = f"ETA {eta:.0f} s" if eta is not None else "ETA -"
                width = 24
                filled = int(width * done / total)
                bar = "=" * filled + ">" * (filled < width) + " " * (width - filled - 1)
                line = f"[{bar[:width]}] {done}/{total} · {live:.0f} tok/s · {eta_text}"
            else:
                line = f"{done} done · {len(runs) - done} live · {live:.0f} tok/s · {elapsed:.0f} s"
            self.stderr.write(f"\r\x1b[2K{line}")
            self.stderr.flush()
            self._progress_shown = True
            await asyncio.sleep(0.25)

    def _clear_progress(self) -> None:
        if self._progress_shown:
            self.stderr.write("\r\x1b[2K")
            self.stderr.flush()
            self._progress_shown = False

    def _print_summary(self) -> None:
        assert self.session is not None
        s = self.session.summary()
        if s.streams < 2:
            return
        self.note(summary_line(s))
        for label, summary in self.session.variant_summaries().items():
            self.note(f"  {label}: {summary_line(summary)}")
