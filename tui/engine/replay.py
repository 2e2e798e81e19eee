"""`dspy-stream replay run.trace`: a recorded run played back, with no model, key or network.

A `ReplaySession` hands out streams with the face every consumer knows (`LiveStream`); each
plays its recorded events at their recorded times, scaled by `speed` (`inf`: as fast as the
consumers take them). Figures live on the run's own clock: a replay's clock runs `speed` times
faster from the replay's start, and every recorded figure is placed on it, so status lines,
rates and the report read as the original run's did, at any speed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from tui.config import Settings
from tui.streaming.events import Cancelled, is_terminal
from tui.streaming.metrics import StreamMetrics
from tui.streaming.program_info import ProgramInfo
from tui.streaming.record import StreamJob
from tui.streaming.session_base import EmptyQuestion, SessionBase
from tui.streaming.trace import RecordedStream, Trace, moved_in_time
from tui.streaming.view import ViewedStream
from tui.streaming.wire import apply_figures, decode

# With `--speed max`, a stream gives the others a turn every this many events.
MAX_SPEED_BATCH = 64


VARIANT_KEYS = ("model", "program", "load")  # what a recorded variant says of itself


def replay_settings(trace: Trace) -> Settings:
    """The recorded run's settings (as reports keep them), for what the screens show."""
    saved = trace.settings
    known = {f.name: f for f in fields(Settings) if f.name != "sources"}
    values: dict[str, Any] = {}
    for name, value in saved.items():
        if name not in known:
            continue
        if name == "inputs":
            value = tuple(tuple(pair) for pair in value or ())
        values[name] = value
    try:
        return Settings(**values)
    except TypeError:
        return Settings(model=str(saved.get("model", "replay")))


class ReplayClock:
    """The recorded run's time, running `speed` times faster from the replay's start."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.origin = time.monotonic()
        self.latest = 0.0  # with speed inf: the recorded instant of the last event played

    def __call__(self) -> float:
        if math.isinf(self.speed):
            return self.origin + self.latest
        return self.origin + (time.monotonic() - self.origin) * self.speed

    def at(self, offset: float) -> float:
        """The replay's instant for `offset` seconds into the recorded run."""
        return self.origin + offset

    async def until(self, offset: float) -> None:
        """Wait until the replay reaches `offset` seconds of the recorded run."""
        if math.isinf(self.speed):
            self.latest = max(self.latest, offset)
            return
        delay = (self.origin + offset / self.speed) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class ReplayRun(ViewedStream):
    def __init__(self, job: StreamJob, session: ReplaySession, recorded: RecordedStream) -> None:
        super().__init__(job, session.settings, session.program_info, StreamMetrics(clock=session.clock))
        self.session = session
        self.recorded = recorded
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._play(), name=f"replay-{self.job.stream_id}")
        return self._task

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        elif self.terminal is None:
            self._deliver(Cancelled(self.record.text), self.session.clock())

    async def _play(self) -> None:
        clock = self.session.clock
        try:
            for count, (offset, item, figures) in enumerate(self.recorded.events, 1):
                await clock.until(offset)
                if figures:
                    apply_figures(self.metrics, self._placed(figures))
                event, _ = decode([*item, 0.0])
                self._deliver(event, clock.at(offset) if math.isinf(clock.speed) else clock())
                if is_terminal(event):
                    return
                if math.isinf(clock.speed) and count % MAX_SPEED_BATCH == 0:
                    await asyncio.sleep(0)
            # The trace ends before this stream did: what had arrived is kept, as a cancel keeps it.
            self._end_cut_short()
        except asyncio.CancelledError:
            if self.terminal is None:
                self._end_cut_short()

    def _end_cut_short(self) -> None:
        now = self.session.clock()
        if self.metrics.ended_at is None:
            self.metrics.finish("cancelled")
        self._deliver(Cancelled(self.record.text), now)

    def _placed(self, figures: Mapping[str, Any]) -> dict[str, Any]:
        placed = moved_in_time(figures, self.session.clock.at)
        if "itls" in placed:
            placed["itls"] = tuple(placed["itls"])
        return placed


class ReplayAsksNothing(EmptyQuestion):
    """A question typed or asked again during a replay: it plays what was recorded."""

    def __init__(self) -> None:
        ValueError.__init__(self, "a replay plays what was recorded: it asks nothing new")


class ReplaySession(SessionBase):
    """The streams of a recorded run, asked for in the order they started (`new_run`)."""

    def __init__(self, trace: Trace, *, speed: float = 1.0) -> None:
        super().__init__(replay_settings(trace))
        self.trace = trace
        self.clock = ReplayClock(speed)
        self._info = trace.program
        self._next = 0
        several = len(self._info.inputs) > 1
        # What each recorded stream was asked, in the order they started.
        self.questions: list[Any] = [s.inputs if several else s.question for s in trace.streams]

    @property
    def brand(self) -> str:
        """How the dashboard's header starts: this is a replay, at this speed."""
        speed = "max" if math.isinf(self.clock.speed) else f"{self.clock.speed:g}x"
        return f"▶ replay {speed}"

    def ensure_model(self) -> None:
        pass

    def ensure_program(self) -> None:
        pass

    @property
    def program_info(self) -> ProgramInfo:
        return self._info

    @property
    def variants(self) -> tuple[str, ...]:
        """The recorded run's variants, in their column order."""
        streams = sorted(self.trace.streams, key=lambda s: s.variant_no)
        return tuple(dict.fromkeys(s.variant for s in streams if s.variant))

    def variant_settings(self) -> dict[str, Settings]:
        saved = self.trace.header.get("variants") or {}
        return {
            label: self.settings.replace(
                **{k: v for k, v in saved.get(label, {}).items() if k in VARIANT_KEYS}
            )
            for label in self.variants
        }

    def new_run(self, question_or_inputs: str | Mapping[str, str]) -> ReplayRun:
        """The next recorded stream, asked with what it was asked; nothing else is asked."""
        if self._next >= len(self.trace.streams) or question_or_inputs != self.questions[self._next]:
            raise ReplayAsksNothing()
        return super().new_run(question_or_inputs)  # type: ignore[return-value]

    def _make_run(self, job: StreamJob) -> ReplayRun:
        if self.started_at is None:
            self.started_at = self.clock.origin
        recorded = self.trace.streams[self._next]
        self._next += 1
        job = StreamJob(
            job.question, stream_id=recorded.stream_id, inputs=job.inputs, variant=recorded.variant,
            variant_no=recorded.variant_no, question_no=recorded.question_no,
        )  # fmt: skip
        run = ReplayRun(job, self, recorded)
        run.observers = self._observers
        return run

    def rerun(self, earlier: Any) -> Any:
        raise ReplayAsksNothing()

    async def wait_turn(self) -> None:
        """The schedule streams start on: each at its recorded start, scaled."""
        index = min(self._next, len(self.trace.streams) - 1)
        if self.trace.streams:
            await self.clock.until(self.trace.streams[index].start)
