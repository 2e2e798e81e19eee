"""Streams that run in worker processes, with the face every consumer already knows.

A `RemoteRun` learns about its stream only from the events its worker sends (`StreamView`), its
figures from the worker's own measurements (taken where the chunks arrive, so the pipe does not
count in TTFT or ITL). It grants its worker credit as its consumer takes events: a consumer that
stops taking stops the worker reading that stream's response.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from tui.config import Settings
from tui.engine.pool import WorkerPool, WorkerProcess, default_workers
from tui.streaming.events import Cancelled, Failed, Status, StreamEvent, TerminalEvent, is_terminal
from tui.streaming.metrics import StreamMetrics
from tui.streaming.program_info import ProgramInfo
from tui.streaming.record import StreamJob
from tui.streaming.session_base import SessionBase
from tui.streaming.view import END_STATES, ViewedStream
from tui.streaming.wire import apply_figures, decode

_keys = itertools.count(1)


class RemoteRun(ViewedStream):
    def __init__(self, job: StreamJob, session: RemoteSession, seed: float) -> None:
        super().__init__(job, session.settings, session.program_info, StreamMetrics())
        self.session = session
        self.seed = seed
        self.key = next(_keys)
        self.worker: WorkerProcess | None = None
        self._task: asyncio.Task[None] | None = None
        self._over = asyncio.Event()
        self._front_wait = 0.0  # the front's own wait for a turn (the concurrency limit)
        self._owed = 0  # credit taken by the consumer, not yet granted back
        self._grant_every = max(1, self.settings.buffer_size // 4)

    def start(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._launch(), name=f"stream-{self.job.stream_id}"
            )
        return self._task

    def cancel(self) -> None:
        if self.terminal is not None:
            return
        if self.worker is not None:
            self.worker.cancel(self.key)
        elif self._task is not None and not self._task.done():
            self._task.cancel()
        else:
            self._end_here(Cancelled(self.record.text))

    # -- the front's side of the boundary -------------------------------------------------

    async def _launch(self) -> None:
        limiter = self.session.limiter
        metrics = self.metrics
        try:
            if limiter.locked():
                metrics.begin_wait()
                self._deliver(Status("queued"))
            async with limiter:
                metrics.end_wait()
                self._front_wait = metrics.queue_time
                self.worker = worker = await self.session.pool.assign(self)
                worker.start(self, self.settings.buffer_size)
                await self._over.wait()
        except asyncio.CancelledError:
            if self.terminal is None:
                self._end_here(Cancelled(self.record.text))
        except Exception as exc:  # no worker could take it (a refusal, a worker dying while loading)
            if self.terminal is None:
                self._end_here(Failed(str(exc), self.record.text))

    def _taken(self, event: StreamEvent) -> None:
        if is_terminal(event):
            return
        self._owed += 1
        if self._owed >= self._grant_every and self.worker is not None and self.terminal is None:
            self.worker.grant(self.key, self._owed)
            self._owed = 0

    def receive(self, items: list[tuple], figures: dict[str, Any] | None) -> bool:
        """A batch from the worker; True once the stream has ended."""
        if figures:
            apply_figures(self.metrics, figures)
            if "queue_time" in figures:
                self.metrics.queue_time += self._front_wait
        for item in items:
            event, at = decode(item)
            self._deliver(event, at)
            if is_terminal(event):
                self._over.set()
                return True
        return False

    def lost(self, reason: str) -> None:
        """Its worker died: the stream fails with what had arrived."""
        if self.terminal is None:
            self._end_here(Failed(reason, self.record.text))

    def _end_here(self, event: TerminalEvent) -> None:
        if self.metrics.started_at is None:
            self.metrics.started_at = self.metrics.clock()
        self.metrics.finish(END_STATES[type(event)].value, getattr(event, "error", ""))
        self._deliver(event)
        self._over.set()


class RemoteSession(SessionBase):
    """A session whose streams run in worker processes; this process never imports DSPy."""

    def __init__(self, settings: Settings, *, workers: int | None = None, seed: int | None = None) -> None:
        super().__init__(settings, seed=seed)
        self.pool = WorkerPool(settings, workers or default_workers())
        self._info: ProgramInfo | None = None
        self._limiter: asyncio.Semaphore | None = None

    def ensure_program(self) -> None:
        if self._info is None:
            self._info = self.pool.program_info()

    def ensure_model(self) -> None:
        self.ensure_program()  # a worker loads both before it says it is ready

    @property
    def program_info(self) -> ProgramInfo:
        self.ensure_program()
        assert self._info is not None
        return self._info

    @property
    def limiter(self) -> asyncio.Semaphore:
        if self._limiter is None:
            self._limiter = asyncio.Semaphore(self.settings.concurrency)
        return self._limiter

    def _make_run(self, job: StreamJob) -> RemoteRun:
        self.ensure_program()
        self._mark_started()
        run = RemoteRun(job, self, self._run_seed())
        run.observers = self._observers
        return run

    def expect(self, streams: int) -> None:
        self.pool.grow(streams)

    def close(self) -> None:
        self.pool.close()
