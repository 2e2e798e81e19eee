"""A program run on a real pseudo-terminal, its output read as it comes, for tests that need a tty."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Sequence


class TerminalProcess:
    """`argv` with stdin, stdout and stderr on one pty of `columns` x `rows`; a thread reads it."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: str | os.PathLike[str],
        columns: int = 120,
        rows: int = 40,
        stderr: int | None = None,
    ) -> None:
        self.leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.process = subprocess.Popen(
            list(argv), stdin=follower, stdout=follower, stderr=follower if stderr is None else stderr,
            env={"TERM": "xterm-256color", **env}, cwd=cwd, start_new_session=True,
        )  # fmt: skip
        os.close(follower)
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="pty-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.leader, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self._output += data

    @property
    def output(self) -> bytes:
        with self._lock:
            return bytes(self._output)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_for(
        self, condition: Callable[[bytes], bool], timeout: float = 30.0, what: str = "output"
    ) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self.output):
            if self.process.poll() is not None:
                raise AssertionError(
                    f"exited ({self.process.returncode}) before {what}: {self.output[-2000:]!r}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.output[-2000:]!r}")
            time.sleep(0.02)

    def send(self, data: bytes) -> None:
        os.write(self.leader, data)

    def close_terminal(self) -> None:
        """The terminal's window is closed: from now on every write to it fails."""
        leader, self.leader = self.leader, -1
        os.close(leader)

    def hang_up(self) -> None:
        """The SIGHUP that follows a closed terminal."""
        os.killpg(self.process.pid, signal.SIGHUP)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._reader.join(5)
        if self.leader >= 0:
            with contextlib.suppress(OSError):
                os.close(self.leader)

    def __enter__(self) -> TerminalProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
