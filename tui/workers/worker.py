"""A worker process: DSPy, LiteLLM and the engines run here, streams in this process's event loop.

Started by the front (`tui.engine.pool`) as `python -m tui.workers CMD_FD EVENT_FD`. Commands
come on CMD_FD, read by a thread; batches of events go out on EVENT_FD, written by a thread, so
neither a slow front nor a burst of commands stalls the streams. Each stream's events are taken
from its bounded queue only against credit granted by the front: with none left the queue fills
and the stream stops reading its HTTP response, as a slow consumer in one process makes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tui.streaming.events import Cancelled, Failed
from tui.streaming.wire import FiguresDelta, encode, is_terminal_item, read_message, write_message

log = logging.getLogger(__name__)
FLUSH_AFTER_S = 0.004  # a batch leaves this long after its first event ...
FLUSH_AT = 256  # ... or as soon as it holds this many events


@dataclass
class _Stream:
    run: Any
    figures: FiguresDelta
    credit: int
    buffer: int  # the credit a stream starts with: what the front holds for it
    more_credit: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool = False

    def cancel(self) -> None:
        """Stop the stream, and stop waiting for credit to send its end."""
        self.cancelled = True
        self.more_credit.set()
        self.run.cancel()


class Outbox:
    """Events batched per flush, written to the front by a thread of their own."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.loop = loop
        self._pending: dict[int, list[tuple]] = {}
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._streams: dict[int, _Stream] = {}
        self._out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, args=(fd,), name="worker-out", daemon=True)
        self._writer.start()

    def attach(self, streams: dict[int, _Stream]) -> None:
        self._streams = streams

    def send(self, message: Any) -> None:
        self._out.put(message)

    def add(self, key: int, item: tuple) -> None:
        self._pending.setdefault(key, []).append(item)
        self._count += 1
        if self._count >= FLUSH_AT or is_terminal_item(item):
            self.flush()
        elif self._timer is None:
            self._timer = self.loop.call_later(FLUSH_AFTER_S, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        batch = []
        for key, items in self._pending.items():
            stream = self._streams.get(key)
            batch.append((key, items, stream.figures.take() if stream else None))
        self._pending, self._count = {}, 0
        self._out.put(("batch", batch))

    def close(self) -> None:
        self.flush()
        self._out.put(None)
        self._writer.join(timeout=2)

    def _write(self, fd: int) -> None:
        while (message := self._out.get()) is not None:
            try:
                write_message(fd, message)
            except OSError:
                return  # the front is gone; the command pipe's end tells the loop


class Worker:
    def __init__(self, loop: asyncio.AbstractEventLoop, outbox: Outbox) -> None:
        self.loop = loop
        self.outbox = outbox
        self.session: Any = None
        self.streams: dict[int, _Stream] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopped = asyncio.Event()
        outbox.attach(self.streams)

    def handle(self, message: Any) -> None:
        if message is None:  # the front closed its end: it is gone
            self.shutdown()
            return
        kind = message[0]
        if kind == "prepare":
            self.prepare(message[1])
        elif kind == "start":
            self.start(*message[1:])
        elif kind == "credit":
            stream = self.streams.get(message[1])
            if stream is not None:
                stream.credit += message[2]
                stream.more_credit.set()
        elif kind == "cancel":
            stream = self.streams.get(message[1])
            if stream is not None:
                stream.cancel()
        elif kind == "shutdown":
            self.shutdown()

    def prepare(self, settings: Any) -> None:
        from tui.config import ConfigError
        from tui.models.errors import ModelError
        from tui.streaming.session import StreamSession

        try:
            session = StreamSession(settings)
            session.ensure_program()
            session.ensure_model()
            session.configure_for_plain_threads()
        except ModelError as exc:
            self.outbox.send(("refused", "model", str(exc)))
            return
        except ConfigError as exc:
            self.outbox.send(("refused", "config", str(exc)))
            return
        except Exception as exc:  # a user's program can raise anything while it loads
            log.exception("worker: preparing the run failed")
            self.outbox.send(("refused", "internal", f"{type(exc).__name__}: {exc}"))
            return
        self.session = session
        self.outbox.send(("ready", session.program_info))

    def start(self, key: int, job: Any, forced_faults: int, seed: float, credit: int) -> None:
        import random

        run = self.session._make_run(job, limited=False)
        run.forced_faults = forced_faults
        run._rng = random.Random(seed)
        stream = _Stream(run, FiguresDelta(run.metrics), credit, credit)
        self.streams[key] = stream
        task = run.feed(functools.partial(self._send, key, stream))
        self.tasks.add(task)
        task.add_done_callback(functools.partial(self._ended, key, stream))

    async def _send(self, key: int, stream: _Stream, event: Any) -> None:
        """An event, as its stream makes it, against credit: with none, the stream waits."""
        while stream.credit <= 0 and not stream.cancelled:
            stream.more_credit.clear()
            await stream.more_credit.wait()
        stream.credit -= 1
        stream.run.metrics.record_queue_fill(stream.buffer - stream.credit)  # sent, not yet taken
        self.outbox.add(key, encode(event, time.monotonic()))

    def _ended(self, key: int, stream: _Stream, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        run = stream.run
        if run.terminal is None and task.cancelled():  # cancelled before it ever ran
            run._end(Cancelled(run.record.text))
        if run.terminal is None:
            exc = task.exception()
            log.error("worker: stream %s failed outside its run", key, exc_info=exc)
            run._end(Failed(f"the worker failed: {type(exc).__name__}: {exc}", run.record.text))
        self.outbox.add(key, encode(run.terminal, time.monotonic()))
        self.outbox.flush()
        self.streams.pop(key, None)

    def shutdown(self) -> None:
        for stream in list(self.streams.values()):
            stream.cancel()
        self.stopped.set()


def _die_with_parent() -> None:
    """The kernel ends this process when the front ends, however it ends (SIGKILL included)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _read_commands(fd: int, loop: asyncio.AbstractEventLoop, worker: Worker) -> None:
    while True:
        try:
            message = read_message(fd)
        except OSError:
            message = None
        loop.call_soon_threadsafe(worker.handle, message)
        if message is None or message[0] == "shutdown":
            return


async def _serve(command_fd: int, event_fd: int) -> None:
    loop = asyncio.get_running_loop()
    outbox = Outbox(loop, event_fd)
    worker = Worker(loop, outbox)
    threading.Thread(
        target=_read_commands, args=(command_fd, loop, worker), name="worker-in", daemon=True
    ).start()
    await worker.stopped.wait()
    if worker.tasks:
        await asyncio.wait(worker.tasks, timeout=2)
    outbox.close()


def main(argv: list[str]) -> int:
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:
        return 0  # the front ended before we could watch it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the front decides when streams stop
    from tui.logs import quiet_environment, send_logs_to_file
    from tui.models.dspy_import import import_dspy
    from tui.streaming.program_output import ProgramOutput

    sys.stdout = ProgramOutput(fileno=1)
    sys.stderr = ProgramOutput(fileno=2)

    quiet_environment()
    import_dspy()

    with contextlib.suppress(OSError):
        send_logs_to_file()
    command_fd, event_fd = int(argv[0]), int(argv[1])
    asyncio.run(_serve(command_fd, event_fd))
    import gc

    gc.freeze()  # exit without walking DSPy's heap
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
