"""What the user's program prints, line by line, told to the stream whose program printed it.

A worker's `sys.stdout` and `sys.stderr` are a `ProgramOutput`: a line printed while a stream
runs the program (in `forward`, a tool, a thread that carries the context: `asyncio.to_thread`,
DSPy's own) becomes that stream's `Status(line, kind="output")`, shown in its pane and on
headless stderr. A line printed outside any stream (at import), or in a plain thread while
several streams run, goes to the log. Nothing a program prints reaches the front's
terminal directly, where it would tear the dashboard or mix with the answers on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Protocol

from tui.streaming.events import Status

log = logging.getLogger("program")
MAX_LINE = 4096  # a longer line (a progress bar that never ends its line) is told in pieces


class PrintingStream(Protocol):
    def printed(self, line: str) -> None: ...


printing_stream: ContextVar[PrintingStream | None] = ContextVar("printing_stream", default=None)
_running: set[PrintingStream] = set()


def running(stream: PrintingStream) -> None:
    """`stream` runs the program in this process now (a plain thread's prints may be its)."""
    _running.add(stream)


def ended(stream: PrintingStream) -> None:
    _running.discard(stream)


def _printing() -> PrintingStream | None:
    """The stream whose context this is; in a thread started without it (`threading.Thread`),
    the one stream running, where only one is."""
    stream = printing_stream.get()
    if stream is None:
        live = tuple(_running)
        stream = live[0] if len(live) == 1 else None
    return stream


class ProgramOutput(io.TextIOBase):
    """A text stream whose complete lines go to the printing stream, or else to the log.

    Each thread's writes are joined into lines of their own, so two streams printing at once
    are not interleaved mid-line. A carriage return starts the line over, as on a terminal.
    """

    def __init__(self, fileno: int | None = None) -> None:
        super().__init__()
        self._fileno = fileno
        self._partial = threading.local()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        if self._fileno is None:
            raise io.UnsupportedOperation("fileno")
        return self._fileno  # faulthandler and native code write the log file

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def write(self, text: Any) -> int:
        text = str(text)
        partial = getattr(self._partial, "text", "") + text
        *lines, partial = partial.split("\n")
        _, carriage_return, rest = partial.rpartition("\r")
        if carriage_return and rest:
            partial = rest  # a progress bar redrawing its line: only the newest drawing counts
        while len(partial) > MAX_LINE:
            lines.append(partial[:MAX_LINE])
            partial = partial[MAX_LINE:]
        self._partial.text = partial
        for line in lines:
            line = line.rstrip("\r").rsplit("\r", 1)[-1]
            if line.strip():
                self._tell(line)
        return len(text)

    def flush(self) -> None:
        pass  # a line is told once it ends: print(..., flush=True) without one waits for it

    def _tell(self, line: str) -> None:
        if getattr(self._partial, "telling", False):
            # Printed while telling: logging's own complaint that the log cannot be written.
            if self._fileno is not None:
                with contextlib.suppress(OSError):
                    os.write(self._fileno, (line + "\n").encode("utf-8", "replace"))
            return
        self._partial.telling = True
        try:
            stream = _printing()
            if stream is not None:
                stream.printed(line)
            else:
                log.info("printed outside a stream: %s", line)
        finally:
            self._partial.telling = False


class PrintedLines:
    """The lines a stream's program prints, turned into its `output` events in order by one task
    on the stream's loop. A thread that prints faster than the stream's consumer takes them
    waits once `LIMIT` are pending, as a program writing to a slow terminal does; the loop's own
    thread never waits (it is the one that drains them)."""

    LIMIT = 1000

    def __init__(self, loop: asyncio.AbstractEventLoop, put: Callable[[Status], Awaitable[None]]) -> None:
        self._loop = loop
        self._put = put
        self._lines: deque[str] = deque()
        self._room = threading.Condition()
        self._draining = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    def add(self, line: str) -> None:
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        with self._room:
            while not on_loop and not self._closed and len(self._lines) >= self.LIMIT:
                self._room.wait(timeout=0.5)
            if self._closed:
                return
            self._lines.append(line)
            if self._draining:
                return
            self._draining = True
        if on_loop:
            self._start()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._start)

    async def flush(self) -> None:
        """Until every line printed so far is told: the stream's end comes after them."""
        while True:
            with self._room:
                if not self._lines or self._closed:
                    return
            task = self._task
            if task is not None and not task.done():
                await asyncio.shield(task)
            else:
                await asyncio.sleep(0)  # the drain is scheduled from another thread: let it start

    def close(self) -> None:
        """The stream has ended: nothing more is told, and no printing thread waits."""
        with self._room:
            self._closed = True
            self._lines.clear()
            self._room.notify_all()

    def _start(self) -> None:
        self._task = self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            with self._room:
                if not self._lines or self._closed:
                    self._draining = False
                    return
                line = self._lines.popleft()
                self._room.notify_all()
            await self._put(Status(line, "output"))
