"""Worker processes, seen from the front: spawned, prepared, given streams, watched, ended.

Each worker is `python -m tui.workers` with two pipes of its own. A thread per worker reads its
batches and hands them to the front's event loop in one call each. A worker that ends by
itself (SIGKILL, a segfault, out of memory) fails its live streams with the reason, keeps their
partial text, and is replaced for later streams; the other workers never notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from tui.config import ConfigError, Settings
from tui.models.errors import ModelError
from tui.streaming.program_info import ProgramInfo
from tui.streaming.wire import read_message, write_message

if TYPE_CHECKING:
    from tui.engine.remote import RemoteRun

log = logging.getLogger(__name__)
SHUTDOWN_GRACE_S = 1.5


def default_workers() -> int:
    count = getattr(os, "process_cpu_count", os.cpu_count)()
    return max(1, count or 1)


def death_reason(code: int | None) -> str:
    if code is not None and code < 0:
        return f"worker process died (signal {-code})"
    return f"worker process died (exit code {code})"


class WorkerProcess:
    """One worker: its process, its pipes, the streams it runs for the front."""

    def __init__(self, settings: Settings, index: int) -> None:
        self.index = index
        self.runs: dict[int, RemoteRun] = {}
        self.waiting = 0  # streams waiting for this worker to be ready
        self.info: ProgramInfo | None = None
        self.refusal: tuple[str, str] | None = None
        self.settled = threading.Event()  # ready, refused or dead
        self.alive = True
        self.exit_code: int | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._on_ready: list[asyncio.Future[None]] = []
        self._send_lock = threading.Lock()
        command_read, self._commands = os.pipe()
        self._events, event_write = os.pipe()
        log_file = _worker_log()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tui.workers", str(command_read), str(event_write)],
                pass_fds=(command_read, event_write),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,  # Ctrl+C reaches the front, which decides
            )
        finally:
            os.close(command_read)
            os.close(event_write)
            if log_file is not subprocess.DEVNULL:
                log_file.close()
        self._reader = threading.Thread(target=self._read, name=f"worker-{index}-events", daemon=True)
        self._reader.start()
        self.send(("prepare", settings))

    @property
    def pid(self) -> int:
        return self.process.pid

    def raise_refusal(self) -> None:
        """A worker that refused the program or the model says why, as the one-line error it is."""
        if self.refusal is not None:
            kind, message = self.refusal
            raise (ModelError if kind == "model" else ConfigError)(message)

    @property
    def load(self) -> int:
        return len(self.runs) + self.waiting

    @property
    def ready(self) -> bool:
        return self.alive and self.info is not None

    def send(self, message: Any) -> None:
        with self._send_lock, contextlib.suppress(OSError):  # it died: its reader says so
            write_message(self._commands, message)

    def start(self, run: RemoteRun, credit: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.runs[run.key] = run
        self.send(("start", run.key, run.job, run.forced_faults, run.seed, credit))

    def when_ready(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self.settled.is_set():
            future.set_result(None)
        else:
            self.loop = self.loop or loop
            self._on_ready.append(future)
            if self.settled.is_set() and not future.done():  # settled while we registered
                future.set_result(None)
        return future

    def _settle(self) -> None:
        self.settled.set()
        self._in_loop(self._wake_waiters)

    def _in_loop(self, callback: Any, *args: Any) -> None:
        """Run `callback` in the front's event loop, from this worker's reader thread."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the run is over
            loop.call_soon_threadsafe(callback, *args)

    def _wake_waiters(self) -> None:
        waiters, self._on_ready = self._on_ready, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    def _read(self) -> None:
        while True:
            try:
                message = read_message(self._events)
            except (OSError, EOFError, ValueError):
                message = None
            if message is None:
                break
            kind = message[0]
            if kind == "batch":
                self._in_loop(self._deliver, message[1])
            elif kind == "ready":
                self.info = message[1]
                self._settle()
            elif kind == "refused":
                self.refusal = (message[1], message[2])
                self._settle()
        self.exit_code = self.process.wait()
        self.alive = False
        os.close(self._events)
        self._settle()
        self._in_loop(self._died)

    def _deliver(self, batch: list[tuple[int, list[tuple], dict | None]]) -> None:
        for key, items, figures in batch:
            run = self.runs.get(key)
            if run is None:
                continue
            if run.receive(items, figures):
                self.runs.pop(key, None)

    def _died(self) -> None:
        reason = death_reason(self.exit_code)
        runs, self.runs = self.runs, {}
        for run in runs.values():
            run.lost(reason)

    def grant(self, key: int, credit: int) -> None:
        self.send(("credit", key, credit))

    def cancel(self, key: int) -> None:
        self.send(("cancel", key))

    def stop(self) -> None:
        self.send(("shutdown",))

    def join(self) -> None:
        self._reader.join(timeout=1)
        with self._send_lock, contextlib.suppress(OSError):
            os.close(self._commands)

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)


def _worker_log() -> Any:
    """Where a worker's own output goes (a native library's prints, a crash's traceback)."""
    from tui.logs import log_path

    try:
        path = log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("ab")
    except OSError:
        return subprocess.DEVNULL


# What a worker spawned on demand, still importing DSPy (about a second), weighs against a
# ready one's streams. A batch's workers, spawned together, weigh nothing while they load: they
# are ready within a moment of each other, and the batch waits for its share of each.
LOADING_WORKER_LOAD = 4


class WorkerPool:
    """Up to `size` workers for one run's settings; the first is spawned at once, the others as
    streams need them. The embedded model lives in exactly one worker."""

    def __init__(self, settings: Settings, size: int) -> None:
        self.settings = settings
        self.size = 1 if settings.is_local else max(1, size)
        self.workers: list[WorkerProcess] = []
        self._spawned = 0
        self._batch_workers: set[int] = set()  # spawned together for a batch: no loading weight
        self._closed = False
        self.spawn()

    def spawn(self) -> WorkerProcess:
        worker = WorkerProcess(self.settings, self._spawned)
        self._spawned += 1
        self.workers.append(worker)
        return worker

    def grow(self, streams: int) -> None:
        """Start a worker for each stream of a batch of `streams` at once, up to `size`, so that
        they load together and the batch spreads evenly: killing one worker fails only its share
        (the embedded model keeps its one worker). The extra imports cost no wall time on two
        cores: 2 or 4 questions finish as fast with two workers as with one."""
        wanted = min(self.size, max(1, streams))
        if wanted > 1:
            self._batch_workers.update(w.index for w in self.workers if w.alive)
        while not self._closed and len([w for w in self.workers if w.alive]) < wanted:
            self._batch_workers.add(self.spawn().index)

    def program_info(self) -> ProgramInfo:
        """The program's shape, once a worker has loaded it and the model; a bad program, model or
        key is raised here as the one-line error it is."""
        first = self.workers[0]
        first.settled.wait()
        first.raise_refusal()
        if first.info is None:
            from tui.logs import log_path

            raise ModelError(f"{death_reason(first.exit_code)} while loading; details in {log_path()}")
        return first.info

    async def assign(self, run: RemoteRun) -> WorkerProcess:
        """The least-loaded worker, a ready one first; another is spawned while every ready one
        is busy. A worker spawned on demand counts as `LOADING_WORKER_LOAD` streams while it
        loads DSPy, so a few streams start at once where a worker is ready; a batch spreads evenly
        over the workers started for it."""
        while True:
            self.workers = [w for w in self.workers if w.alive or w.runs]
            ready = [w for w in self.workers if w.ready]
            settling = [w for w in self.workers if w.alive and not w.settled.is_set()]
            busy = all(w.runs for w in ready)
            if busy and not settling and len(self.workers) < self.size:
                settling.append(self.spawn())
            candidates = [(w.load, w) for w in ready]
            candidates += [(w.load + self._loading_weight(w), w) for w in settling]
            if not candidates:
                self.spawn()
                continue
            _, worker = min(candidates, key=lambda pair: pair[0])
            if worker.ready:
                return worker
            worker.waiting += 1  # counted while it loads, so the next streams go elsewhere
            try:
                await worker.when_ready()
            finally:
                worker.waiting -= 1
            worker.raise_refusal()
            if worker.ready:
                return worker

    def _loading_weight(self, worker: WorkerProcess) -> int:
        return 0 if worker.index in self._batch_workers else LOADING_WORKER_LOAD

    def close(self) -> None:
        """End every worker: asked first, killed after a grace period."""
        if self._closed:
            return
        self._closed = True
        for worker in self.workers:
            if worker.runs and worker.settled.is_set():
                worker.stop()  # it finishes what it has in hand
            else:
                worker.kill()  # nothing in hand, or still loading DSPy: nothing to lose
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        for worker in self.workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.process.wait()
            worker.join()
