"""A Linux terminal driver that outlives its terminal.

When the terminal goes away (its window closed, an ssh connection dropped, tmux killed), every
write to it fails. Textual's writer thread would die on the first failure and the next frame
block forever on its full queue, so the SIGHUP that follows could never end the run: no
report, no history, the streams left running. Here failed writes are dropped, and the app is
told the terminal has gone, since a SIGHUP does not always follow.

An idle dashboard writes nothing, so only its reads can tell: a hung-up terminal reads as end
of input (or EIO), at once and for ever. Textual's input thread reads again straight away,
spinning a core until the app exits; here it stops reading and tells the app the terminal has
gone. And the SIGCONT a hang-up brings restarts Textual's application mode only when a SIGTSTP
of this driver's suspended it: Textual restarts it on any SIGCONT, a second writer thread and a
second input thread beside the first ones, which nothing stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
from codecs import getincrementaldecoder

from textual._parser import ParseError
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

from tui.output.guarded import GuardedOut

READ_SIZE = 4096  # as Textual reads
SELECT_TIMEOUT_S = 0.1  # how often the input thread looks at `exit_event`, and ticks the parser


class TerminalDriver(LinuxDriver):
    _loop: asyncio.AbstractEventLoop | None = None

    def start_application_mode(self) -> None:
        self._loop = asyncio.get_running_loop()
        # Before the writer thread starts: it takes this file's write and flush.
        if not isinstance(self._file, GuardedOut):
            self._file = GuardedOut(self._file, on_broken=self._terminal_gone)
        super().start_application_mode()

    def _terminal_gone(self) -> None:
        """Tell the app, from the writer or the input thread."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the app is over
                self._loop.call_soon_threadsafe(self._app.terminal_gone)

    def _sigcont_application(self, *_: object) -> None:
        # `_must_signal_resume` is set where this driver's SIGTSTP suspended application mode,
        # and cleared once it has started again.
        if self._auto_restart and self._must_signal_resume:
            self.resume_application_mode()

    def run_input_thread(self) -> None:
        """Textual's input loop, except that the end of the input ends it.

        A terminal whose read gives nothing, or fails, has hung up: the app is told. Input that
        is no terminal (a pipe, /dev/null) has merely ended: the display goes on without it.
        """
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode
        try:
            while not self.exit_event.is_set():
                if selector.select(SELECT_TIMEOUT_S):
                    try:
                        data = os.read(self.fileno, READ_SIZE)
                    except OSError:  # EIO: the terminal has hung up
                        data = b""
                    if not data:
                        if self.input_tty:
                            self._terminal_gone()
                        return
                    for event in parser.feed(decode(data)):
                        self.process_message(event)
                for event in parser.tick():  # a lone Escape is a key once nothing follows it
                    self.process_message(event)
            for event in parser.tick():
                self.process_message(event)
        finally:
            selector.close()
            with contextlib.suppress(EOFError, ParseError):  # as Textual ends its parser
                for _event in parser.feed(""):
                    pass
