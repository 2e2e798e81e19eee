"""A run's answers as text: one stream raw, several as `docker compose logs` shows services.

One question: its answer's tokens as they come, then a newline. Several: each stream's
answer line by line as lines complete, each line after its stream's tag (`[2] `), the
question when the stream starts, a partial line written out when the stream ends however it
ends. The same writer serves headless stdout and `--output` files (headless and dashboard),
so the two have the same shape; only a terminal gets colour and escaped control characters.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from tui.output.guarded import GuardedOut
from tui.streaming.events import Cancelled, Done, Failed, Retrying, Status, StreamEvent, Token
from tui.streaming.record import StreamJob
from tui.streaming.safe_text import HeldBack, hide_secrets, visible

if TYPE_CHECKING:
    from tui.streaming.session_base import LiveStream as StreamRun

# docker compose's service colours, in its order: cyan, yellow, green, magenta, blue, red.
TAG_COLOURS = ("36", "33", "32", "35", "34", "31")
# A line the model never ends is written out at its last space once it is this long.
LONGEST_LINE = 2000


def answer_fields(run: StreamRun) -> tuple[str, ...]:
    """The fields that make the answer: every streamed field that is not reasoning."""
    fields = tuple(f.key for f in run.info.outputs if f.streams and not f.reasoning)
    return fields or (run.info.final_output.key,)


def unstreamed_outputs(run: StreamRun, prediction: Any) -> list[tuple[str, Any]]:
    """Numbers, lists and models do not stream: they come whole with the Prediction."""
    get = getattr(prediction, "get", None)
    if get is None:
        return []
    return [
        (output.name, value)
        for output in run.info.outputs
        if not output.streams and (value := get(output.name)) is not None
    ]


def wants_colour(out: Any, environ: dict[str, str] | None = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    environ = os.environ if environ is None else environ
    if environ.get("NO_COLOR"):
        return False
    try:
        return bool(out.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def stream_tag(job: StreamJob, *, colour: bool) -> str:
    """`[2] ` or `[Q2 · gpt-4o-mini · predict] `, coloured by the stream's number (its variant's
    with variants) when `colour`."""
    tag = f"[{job.tag}]"
    if colour:
        number = job.variant_no or job.stream_id
        tag = f"\x1b[{TAG_COLOURS[(number - 1) % len(TAG_COLOURS)]}m{tag}\x1b[0m"
    return tag + " "


class AnswerWriter(Protocol):
    """What a run's answers are written through: told of each stream and each of its events."""

    def started(self, run: StreamRun) -> None: ...

    def feed(self, run: StreamRun, event: StreamEvent) -> None: ...

    def close(self) -> None: ...


class RawAnswer:
    """One stream's answer tokens as they arrive, a newline at the end: `llm`'s output.

    Text is written as `HeldBack` gives it out: a key split across tokens is whole when hidden.
    """

    def __init__(self, out: IO[str], *, safe: bool, before_write: Callable[[], None] | None = None) -> None:
        self.out = out
        self.safe = safe
        self.before_write = before_write
        self._held = HeldBack()
        self._at_line_start = True
        self._field: str | None = None

    def started(self, run: StreamRun) -> None:
        self._field = None

    def feed(self, run: StreamRun, event: StreamEvent) -> None:
        match event:
            case Token(field=name, text=text) if name in answer_fields(run):
                if len(answer_fields(run)) > 1 and self._field != name:
                    # A program with several answer fields: each under its name.
                    self.end_line()
                    self.write(f"{name}: ")
                    self._field = name
                self.write(text)
            case Retrying() | Failed() | Cancelled() | Status(kind="tool" | "stage" | "output"):
                # A tool call, a stage or a printed line is noted on stderr on a line of its own:
                # end this one.
                self._field = None
                self.end_line()
            case Done(prediction=prediction):
                self._field = None
                for name, value in unstreamed_outputs(run, prediction):
                    self.end_line()
                    self.write(f"{name}: {value}")
                self.end_line()

    def write(self, text: str) -> None:
        shown = self._held.feed(text)
        if shown:
            self._emit(shown)

    def _emit(self, text: str) -> None:
        if self.safe:
            text = visible(text)
        if self.before_write is not None:
            self.before_write()
        self.out.write(text)
        self.out.flush()
        self._at_line_start = text.endswith("\n")

    def end_line(self) -> None:
        if self._held.holding:
            self._emit(self._held.flush())
        if not self._at_line_start:
            if self.before_write is not None:
                self.before_write()
            self.out.write("\n")
            self.out.flush()
            self._at_line_start = True

    @property
    def at_line_start(self) -> bool:
        return self._at_line_start and not self._held.holding

    def close(self) -> None:
        self.end_line()


class TaggedLines:
    """Several streams' answers, a whole line at a time, each line after its stream's tag."""

    def __init__(
        self,
        out: IO[str],
        *,
        colour: bool,
        safe: bool,
        before_write: Callable[[], None] | None = None,
    ) -> None:
        self.out = out
        self.colour = colour
        self.safe = safe
        self.before_write = before_write
        self._partial: dict[int, str] = {}
        self._field: dict[int, str] = {}
        self._jobs: dict[int, StreamJob] = {}

    def started(self, run: StreamRun) -> None:
        stream_id = run.job.stream_id
        self._jobs[stream_id] = run.job
        self.end(stream_id)  # asked again: the earlier attempt's last words first
        self._field.pop(stream_id, None)
        lines = run.job.question.splitlines() or [""]
        self._write(stream_id, [f"Q: {lines[0]}", *lines[1:]])

    def feed(self, run: StreamRun, event: StreamEvent) -> None:
        stream_id = run.job.stream_id
        match event:
            case Token(field=name, text=text) if name in answer_fields(run):
                if len(answer_fields(run)) > 1 and self._field.get(stream_id) != name:
                    self.end(stream_id)
                    self._field[stream_id] = name
                    text = f"{name}: {text.lstrip()}"
                self.text(stream_id, text)
            case Retrying() | Failed() | Cancelled():
                self._field.pop(stream_id, None)
                self.end(stream_id)
            case Done(prediction=prediction):
                self._field.pop(stream_id, None)
                self.end(stream_id)
                self._write(
                    stream_id, [f"{name}: {value}" for name, value in unstreamed_outputs(run, prediction)]
                )

    def text(self, stream_id: int, text: str) -> None:
        """Add text to a stream's line; every line it completes is written."""
        partial = self._partial.pop(stream_id, "") + text
        *complete, partial = partial.split("\n")
        while len(partial) > LONGEST_LINE:
            cut = partial.rfind(" ", 0, LONGEST_LINE) + 1 or LONGEST_LINE
            complete.append(partial[:cut].rstrip(" "))
            partial = partial[cut:]
        if partial:
            self._partial[stream_id] = partial
        self._write(stream_id, complete)

    def end(self, stream_id: int) -> None:
        """The stream's last words, on a line of their own."""
        partial = self._partial.pop(stream_id, "")
        if partial:
            self._write(stream_id, [partial])

    def close(self) -> None:
        for stream_id in list(self._partial):
            self.end(stream_id)

    def _write(self, stream_id: int, lines: list[str]) -> None:
        if not lines:
            return
        tag = stream_tag(self._jobs.get(stream_id) or StreamJob("", stream_id), colour=self.colour)
        shown = []
        for line in lines:
            line = hide_secrets(line.rstrip("\r"))
            shown.append(tag + (visible(line) if self.safe else line) + "\n")
        if self.before_write is not None:
            self.before_write()
        self.out.write("".join(shown))
        self.out.flush()


class AnswerFile:
    """`--output FILE`: the answers in the shape headless stdout has, without colour or escapes.

    A file that cannot be written any more (a full disk) is dropped; the run goes on.
    """

    def __init__(self, path: Path, *, several: bool, jsonl: bool = False) -> None:
        self.path = path
        self.file = GuardedOut(path.open("w", encoding="utf-8"))
        self.writer = answer_writer(self.file, several=several, jsonl=jsonl, colour=False, safe=False)

    def started(self, run: StreamRun) -> None:
        self.writer.started(run)

    def feed(self, run: StreamRun, event: StreamEvent) -> None:
        self.writer.feed(run, event)

    def close(self) -> None:
        self.writer.close()
        self.file.close()

    @property
    def broken(self) -> OSError | None:
        return self.file.broken


def answer_writer(
    out: IO[str],
    *,
    several: bool,
    jsonl: bool = False,
    colour: bool = False,
    safe: bool = False,
    before_write: Callable[[], None] | None = None,
) -> AnswerWriter:
    """The writer for `out`: JSONL events, tagged lines for several streams, or one raw answer."""
    if jsonl:
        from tui.output.jsonl import JsonlEvents

        return JsonlEvents(out, safe=safe, before_write=before_write)
    if several:
        return TaggedLines(out, colour=colour, safe=safe, before_write=before_write)
    return RawAnswer(out, safe=safe, before_write=before_write)
