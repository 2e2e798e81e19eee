"""A Linux terminal driver that outlives its terminal.

When the terminal goes away (its window closed, an ssh connection dropped, tmux killed), every
write to it fails. Textual's writer thread would die on the first failure and the next frame
block forever on its full queue, so the SIGHUP that follows could never end the run: no
report, no history, the streams left running. Here failed writes are dropped instead.
"""

from __future__ import annotations

from textual.drivers.linux_driver import LinuxDriver

from tui.output.guarded import GuardedOut


class TerminalDriver(LinuxDriver):
    def start_application_mode(self) -> None:
        # Before the writer thread starts: it takes this file's write and flush.
        if not isinstance(self._file, GuardedOut):
            self._file = GuardedOut(self._file)
        super().start_application_mode()
