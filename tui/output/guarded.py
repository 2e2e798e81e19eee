"""A stream that stops being written once writing fails (a closed pipe, a full disk)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO


class GuardedOut:
    """Writes to `out` until a write fails; then drops what follows.

    The run goes on without it, so the report and the history are still written.
    """

    def __init__(self, out: IO[str], on_broken: Callable[[], None] | None = None) -> None:
        """`on_broken`: called once, from the writing thread, when the first write fails."""
        self.out = out
        self.broken: OSError | None = None
        self.on_broken = on_broken

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

    def close(self) -> None:
        try:
            self.out.close()
        except (OSError, ValueError) as exc:
            if self.broken is None:
                self.broken = exc if isinstance(exc, OSError) else OSError(str(exc))

    def _fail(self, exc: Exception) -> None:
        self.broken = exc if isinstance(exc, OSError) else OSError(str(exc))
        _silence(self.out)
        if self.on_broken is not None:
            self.on_broken()

    def fileno(self) -> int:
        return self.out.fileno()

    def isatty(self) -> bool:
        try:
            return self.out.isatty()
        except (OSError, ValueError):
            return False


def _silence(out: IO[str]) -> None:
    """Point a failed standard stream at /dev/null, so the interpreter's flush at exit stays quiet."""
    try:
        fd = out.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
