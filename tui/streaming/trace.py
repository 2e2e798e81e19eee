"""`--record run.trace`: everything a run streamed, written as it arrives, read back for a replay.

JSON lines (gzip when the name ends in `.gz`). The first line is the run: `{"trace": "dspy-stream",
"version", "date", "mode", "settings" (as reports keep them: no keys, no URL credentials),
"program" (the program's shape)}`. Then, in arrival order:
- `{"start": K, "id": N, "question", "inputs", "variant", "t"}`: stream K (a re-run of stream N
  gets a new K) starts, `t` seconds after the run's start;
- `{"e": K, "t", "v": [tag, ...]}`: one event, as it crosses a worker's pipe (`wire.encode`),
  with `"m"`: the stream's figures that changed, its times as seconds from the run's start.

Figures are written with a stream's first event, at most every `FIGURES_EVERY_S` while it streams,
and with its terminal event, so a replay shows the live figures of the run and ends with exactly
its final ones. The file is flushed every `FLUSH_EVERY_S` and at each stream's end: a run killed
while recording leaves a trace that replays up to where it ends.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from tui.streaming.events import StreamEvent, is_terminal
from tui.streaming.program_info import OutputField, ProgramInfo
from tui.streaming.safe_text import hide_secrets, hide_secrets_in
from tui.streaming.wire import FiguresDelta, encode

log = logging.getLogger(__name__)

TRACE_VERSION = 1
FIGURES_EVERY_S = 0.1
FLUSH_EVERY_S = 0.25
# StreamMetrics fields that are instants on the monotonic clock: written relative to the run's start.
TIME_FIGURES = (
    "started_at", "attempt_started_at", "first_token_at", "lm_first_chunk_at", "last_token_at",
    "ended_at", "first_output_at", "_waiting_since",
)  # fmt: skip


def moved_in_time(figures: Mapping[str, Any], move: Callable[[float], float]) -> dict[str, Any]:
    """`figures` with each instant moved by `move`: onto the trace's offsets when written, onto
    the replay's clock when read."""
    moved = dict(figures)
    for name in TIME_FIGURES:
        if moved.get(name) is not None:
            moved[name] = move(moved[name])
    return moved


class TraceError(ValueError):
    """A trace that cannot be replayed at all; the message is one line."""


def open_trace_for_writing(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "wb", compresslevel=6), encoding="utf-8")
    return path.open("w", encoding="utf-8")


class TraceWriter:
    """Follows every stream of a session (`session.watch`) and writes the trace as events arrive.

    A write that fails (a full disk) stops the recording with one warning; the run goes on.
    """

    def __init__(self, path: Path, session: Any, mode: str | None, *, clock: Any = time.monotonic) -> None:
        self.path = path
        self.session = session
        self.mode = mode
        self.clock = clock
        self.broken: str | None = None
        self._out: IO[str] | None = open_trace_for_writing(path)
        self._origin: float | None = None
        self._keys: dict[int, int] = {}  # id(run) -> its key in the trace, while it streams
        self._started = 0
        self._figures: dict[int, FiguresDelta] = {}
        self._figures_at: dict[int, float] = {}
        self._flushed_at = 0.0

    # -- StreamWatcher --------------------------------------------------------------------

    def started(self, run: Any) -> None:
        if self._origin is None:
            self._origin = self.session.started_at if self.session.started_at is not None else self.clock()
            self._write({
                "trace": "dspy-stream", "version": TRACE_VERSION,
                "date": datetime.now().isoformat(timespec="seconds"), "mode": self.mode,
                "settings": self.session.settings.public_dict(), "program": asdict(run.info),
                "variants": {
                    label: {"model": v.model, "program": v.program, "load": v.load}
                    for label, v in self.session.variant_settings().items()
                },
            })  # fmt: skip
        self._started += 1
        key = self._started
        self._keys[id(run)] = key
        self._figures[key] = FiguresDelta(run.metrics)
        self._write({
            "start": key, "id": run.job.stream_id, "question": hide_secrets(run.job.question),
            "inputs": hide_secrets_in(dict(run.job.inputs)), "variant": run.job.variant,
            "variant_no": run.job.variant_no, "question_no": run.job.question_no,
            "t": self._offset(self.clock()),
        })  # fmt: skip

    def feed(self, run: Any, event: StreamEvent) -> None:
        key = self._keys.get(id(run))
        if key is None or self._out is None:
            return
        now = self.clock()
        record: dict[str, Any] = {"e": key, "t": self._offset(now), "v": _safe_item(encode(event, 0.0)[:-1])}
        ending = is_terminal(event)
        if ending or now - self._figures_at.get(key, -1.0) >= FIGURES_EVERY_S:
            self._figures_at[key] = now
            changed = self._figures[key].take()
            if changed:
                record["m"] = self._relative(changed)
        self._write(record)
        if ending:
            self._keys.pop(id(run), None)
            self._figures.pop(key, None)
            self._figures_at.pop(key, None)
        if ending or now - self._flushed_at >= FLUSH_EVERY_S:
            self._flush(now)

    # -- the file -----------------------------------------------------------------------

    def _offset(self, instant: float) -> float:
        assert self._origin is not None
        return round(instant - self._origin, 6)

    def _relative(self, changed: dict[str, Any]) -> dict[str, Any]:
        changed = moved_in_time(changed, self._offset)
        if "error" in changed:
            changed["error"] = hide_secrets(changed["error"])
        return changed

    def _write(self, record: dict[str, Any]) -> None:
        if self._out is None:
            return
        try:
            self._out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        except (OSError, ValueError) as exc:
            self._fail(exc)

    def _flush(self, now: float) -> None:
        self._flushed_at = now
        if self._out is None:
            return
        try:
            self._out.flush()
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.broken = getattr(exc, "strerror", None) or str(exc)
        log.warning("--record %s: stopped recording: %s", self.path, self.broken)
        out, self._out = self._out, None
        if out is not None:
            with contextlib.suppress(OSError, ValueError):
                out.close()

    def close(self) -> None:
        if self._out is not None:
            try:
                self._out.close()
            except OSError as exc:
                self._fail(exc)
            self._out = None


def _safe_item(item: tuple) -> list:
    """An encoded event with secrets hidden in its text (a key echoed by a model, an error)."""
    return [hide_secrets(part) if isinstance(part, str) else part for part in item]


# -- reading ------------------------------------------------------------------------------


@dataclass
class RecordedStream:
    key: int
    stream_id: int
    question: str
    inputs: dict[str, str]
    variant: str
    start: float
    variant_no: int = 0
    question_no: int = 0
    # (seconds from the run's start, encoded event without its time, changed figures or None)
    events: list[tuple[float, list, dict[str, Any] | None]] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        return bool(self.events) and self.events[-1][1][0] in ("d", "f", "c")


@dataclass
class Trace:
    path: Path
    header: dict[str, Any]
    streams: list[RecordedStream]
    cut_short: str | None = None  # why reading stopped early: a crash while recording
    ends_at: float = 0.0  # the last instant recorded

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.header.get("settings") or {})

    @property
    def program(self) -> ProgramInfo:
        data = dict(self.header.get("program") or {})
        outputs = tuple(OutputField(**f) for f in data.pop("outputs", ()) or ())
        inputs = tuple(data.pop("inputs", ("question",)))
        known = {k: v for k, v in data.items() if k in ("label", "instructions")}
        return ProgramInfo(inputs=inputs, outputs=outputs or ProgramInfo("").outputs, **known)


def _lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
        yield from handle


def read_trace(path: Path) -> Trace:
    """The whole trace; one that ends mid-line or mid-stream (a crash) is read up to where it
    ends, and says so in `cut_short`."""
    streams: dict[int, RecordedStream] = {}
    header: dict[str, Any] | None = None
    cut: str | None = None
    ends_at = 0.0
    number = 0
    try:
        for number, line in enumerate(_lines(path), 1):
            if not line.endswith("\n"):
                cut = f"the last line ({number}) is cut off"
                break
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if header is None:
                    raise TraceError(f"{path}: not a dspy-stream trace (line 1 is not JSON)") from None
                cut = f"line {number} is not JSON"
                break
            if header is None:
                if not isinstance(record, dict) or record.get("trace") != "dspy-stream":
                    raise TraceError(f"{path}: not a dspy-stream trace (written with --record)")
                if record.get("version") != TRACE_VERSION:
                    version = record.get("version")
                    raise TraceError(f"{path}: trace version {version!r} is not {TRACE_VERSION}")
                header = record
                continue
            if "start" in record:
                streams[record["start"]] = RecordedStream(
                    record["start"], int(record.get("id", len(streams) + 1)), str(record.get("question", "")),
                    dict(record.get("inputs") or {}), str(record.get("variant") or ""), float(record["t"]),
                    int(record.get("variant_no") or 0), int(record.get("question_no") or 0),
                )  # fmt: skip
                ends_at = max(ends_at, float(record["t"]))
            elif "e" in record and record["e"] in streams:
                t = float(record["t"])
                streams[record["e"]].events.append((t, list(record["v"]), record.get("m")))
                ends_at = max(ends_at, t)
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except (EOFError, gzip.BadGzipFile, OSError, UnicodeDecodeError) as exc:
        if header is None:
            raise TraceError(f"{path}: cannot be read ({exc})") from None
        cut = f"the file ends early ({exc})"
    if header is None:
        raise TraceError(f"{path}: empty: no run was recorded in it")
    trace = Trace(path, header, sorted(streams.values(), key=lambda s: s.start), cut, ends_at)
    open_streams = sum(not s.ended for s in trace.streams)
    if trace.cut_short is None and open_streams:
        trace.cut_short = f"{open_streams} stream{'s' * (open_streams != 1)} had not ended"
    return trace
