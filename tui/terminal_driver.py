"""A Linux terminal driver that outlives its terminal.

When the terminal goes away (its window closed, an ssh connection dropped, tmux killed), every
write to it fails. Textual's writer thread would die on the first failure and the next frame
block forever on its full queue, so the SIGHUP that follows could never end the run: no
report, no history, the streams left running. Here failed writes are dropped, and the app is
told the terminal has gone, since a SIGHUP does not always follow.
"""

from __future__ import annotations

import asyncio
import contextlib

from textual.drivers.linux_driver import LinuxDriver

from tui.output.guarded import GuardedOut


class TerminalDriver(LinuxDriver):
    def start_application_mode(self) -> None:
        loop = asyncio.get_running_loop()

        def gone() -> None:  # in the writer thread
            with contextlib.suppress(RuntimeError):  # the loop has closed: the app is over
                loop.call_soon_threadsafe(self._app.terminal_gone)

        # Before the writer thread starts: it takes this file's write and flush.
        if not isinstance(self._file, GuardedOut):
            self._file = GuardedOut(self._file, on_broken=gone)
        super().start_application_mode()
