"""The Textual app: the dashboard screen, the views over it, one clock, and a clean quit.

`run_dashboard(session, questions)` is what the CLI calls; it returns the exit code:
0, or 1 when a stream's last attempt failed, or 130 when quitting cancelled live streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

from platformdirs import user_downloads_path
from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.driver import Driver
from textual.screen import Screen

from tui.config import Settings
from tui.demo import DEMO_QUESTIONS, DEMO_TIPS
from tui.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from tui.history import begin_recording
from tui.screens.aggregate import AggregateScreen
from tui.screens.dashboard import DashboardScreen
from tui.screens.help import HelpScreen
from tui.screens.quit import QuitScreen
from tui.screens.save import SaveScreen
from tui.screens.summary import SummaryScreen
from tui.screens.table import TableScreen
from tui.streaming.arrivals import Arrivals, Schedule
from tui.streaming.session_base import SessionBase as StreamSession
from tui.transcript import default_path, save_session
from tui.widgets.global_status import total_tokens_per_s
from tui.widgets.merged_log import MergedLog
from tui.widgets.sanitize import one_line
from tui.widgets.stream_pane import StreamPane

log = logging.getLogger(__name__)

TICK_HZ = 10.0  # panes and status lines are redrawn at this rate, whatever the token rate
MERGE_WINDOW_S = 0.5  # the merged view gathers each stream's text over this long into one line
THROUGHPUT_SAMPLES = 600  # ten minutes of the summary's sparkline
QUITS = ("quit", "interrupt")  # the palette has its own Quit
QUIT_GRACE_S = 5.0  # how long quitting waits for cancelled streams to close their connections
BATCH_MODES = ("concurrent", "aggregate", "recovery", "demo")
# Young collections less often (each stays a few ms) and full ones rarer: a full pass stops the
# event loop for as long as it takes to walk every live object, which a dashboard feels as a stall.
GC_THRESHOLDS = (10_000, 10, 10)


def freeze_startup_heap() -> None:
    """Keep what exists once the app is up (DSPy, LiteLLM, Textual: ~450k objects) out of the GC.

    A full collection walks every tracked object; with those libraries loaded that is ~200 ms
    with the event loop stopped, every few seconds while streams allocate. Frozen objects are
    still freed by reference counting; only cycles among them are never collected, and they
    are mostly modules and classes that live as long as the process. Done once per process.
    """
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)


def initial_questions(mode: str | None, questions: Sequence[str]) -> list[str]:
    """The questions asked at start: one in simple mode; the demo set when a demo has none."""
    if mode == "simple":
        return list(questions[:1])
    if mode in ("demo", "recovery") and not questions:
        return list(DEMO_QUESTIONS)
    return list(questions)


class StreamDashboard(App[int]):
    """Streams token-by-token answers from DSPy programs, one pane per question."""

    CSS_PATH = "app.tcss"
    TITLE = "dspy-stream"
    # Keys that work on every screen; the views' own keys are the screens' (each footer shows its own).
    BINDINGS = [
        Binding("f1", "help", "Help", tooltip="Show the keys and how to read a pane"),
        Binding("ctrl+s", "save", "Save", tooltip="Save the session as Markdown or JSON"),
        Binding("ctrl+q", "quit", "Quit", priority=True, tooltip="Quit (asks first while streams are live)"),
        # The terminal is in raw mode, so Ctrl+C is a key, not SIGINT: it does what SIGINT does.
        Binding(
            "ctrl+c",
            "interrupt",
            "Interrupt",
            show=False,
            priority=True,
            tooltip="Cancel every stream and quit (again: at once); in a box with a selection, copy it",
        ),
        # Raw mode again: Ctrl+Z is a key, so the shell's job control needs it bound. Streams
        # wait while the dashboard is stopped (their unread events hold them), and go on at `fg`.
        Binding(
            "ctrl+z",
            "suspend_process",
            "Suspend",
            show=False,
            tooltip="Stop the dashboard and return to the shell; `fg` brings it back",
        ),
    ]

    def __init__(
        self,
        settings: Settings,
        questions: Sequence[str] = (),
        *,
        session: StreamSession,
        clock: Callable[[], float] = time.monotonic,
        tick_hz: float = TICK_HZ,
        steady: bool = False,
        exit_when_done: bool = False,
        prepare: Callable[[], Sequence[str]] | None = None,
        on_prepared: Callable[[list[str]], None] | None = None,
        schedule: Schedule | None = None,
    ) -> None:
        """`clock` drives every figure, spinner and countdown; `steady` stops blinking and animation.

        Tests and screenshots pass a frozen clock and `steady=True`, so what is drawn is repeatable.
        `prepare`: run in a thread after the first frame, while the program loads in a worker; it
        returns the questions to ask (then `on_prepared` gets them), or raises what ends the app
        (kept in `refusal`).
        """
        super().__init__()
        self.settings = settings
        self.questions = initial_questions(settings.mode, questions)
        self.session = session
        session.use_clock(clock)
        self.schedule = schedule  # when each question given at start gets its pane; None: at once
        self.clock = clock
        self.tick_hz = tick_hz
        self.steady = steady
        self.merged = MergedLog()
        self.throughput: deque[float] = deque(maxlen=THROUGHPUT_SAMPLES)
        self.interrupted = False
        self.exit_when_done = exit_when_done and (bool(self.questions) or prepare is not None)
        self.refusal: BaseException | None = None
        self._prepare = prepare
        self._on_prepared = on_prepared
        self._ticks = 0
        self._merge_every = max(1, round(tick_hz * MERGE_WINDOW_S))
        if steady:
            self.animation_level = "none"
        batch = settings.mode in BATCH_MODES or len(self.questions) > 1
        self.dashboard = DashboardScreen(
            self.session,
            settings,
            clock=clock,
            merged=self.merged,
            batch=batch,
            blink=not steady,
            loading=prepare is not None,
        )

    def get_driver_class(self) -> type[Driver]:
        driver = super().get_driver_class()
        if sys.platform != "win32":
            from textual.drivers.linux_driver import LinuxDriver

            from tui.terminal_driver import TerminalDriver

            if driver is LinuxDriver:
                return TerminalDriver
        return driver

    def get_default_screen(self) -> Screen:
        return self.dashboard

    def on_mount(self) -> None:
        # After the first frame: the screen is up before the clock or any stream starts.
        self.call_after_refresh(self._start)

    def _start(self) -> None:
        freeze_startup_heap()
        self.set_interval(1 / self.tick_hz, self._tick, name="dashboard clock")
        self.set_interval(1.0, self._sample, name="throughput sampler")
        if self._prepare is not None:
            self.run_worker(self._load, name="load the program", thread=True, exit_on_error=False)
            return
        self._ask_at_start()

    def _load(self) -> None:
        assert self._prepare is not None
        try:
            questions = list(self._prepare())
        except Exception as refusal:  # the front says it in one line once the terminal is back
            outcome, value = self._refused, refusal
        else:
            outcome, value = self._prepared, questions
        with contextlib.suppress(RuntimeError):  # quit while loading: nobody is waiting for it
            self.call_from_thread(outcome, value)

    def _refused(self, refusal: BaseException) -> None:
        self.refusal = refusal
        self.exit(EXIT_USAGE, return_code=EXIT_USAGE)

    def _prepared(self, questions: list[str]) -> None:
        self.questions = initial_questions(self.settings.mode, questions)
        self.exit_when_done = self.exit_when_done and bool(self.questions)
        if self._on_prepared is not None:
            self._on_prepared(self.questions)
        if len(self.questions) > 1:
            self.dashboard.show_batch()
        self.dashboard.program_ready(self.session.program_info)
        self._ask_at_start()

    def _ask_at_start(self) -> None:
        mode = self.settings.mode
        if mode == "simple" and len(self.questions) < 1:
            self.notify("Simple mode: ask one question.", timeout=4)
        if self.questions and self.schedule is None and self.settings.request_rate is not None:
            self.schedule = Arrivals(self.settings.request_rate, self.settings.burstiness)
        if self.questions and self.schedule is not None and len(self.questions) > 1:
            self.run_worker(self._ask_on_schedule(self.questions), name="scheduled questions")
        elif self.questions:
            self.dashboard.ask(self.questions)
        if mode == "aggregate":
            self.action_aggregate()
        elif mode == "demo":
            self.notify(DEMO_TIPS, title="Demo", timeout=8)

    async def _ask_on_schedule(self, questions: Sequence[str]) -> None:
        """Each question gets its pane at its planned start: `--request-rate`, a replay's."""
        assert self.schedule is not None
        for question in questions:
            await self.schedule.wait_turn()
            self.dashboard.ask([question])

    async def on_event(self, event: events.Event) -> None:
        # Keys arrive here first, in the order typed. Where the focus must move (Tab, or typing
        # while a pane has focus), it moves now, before this key is delivered: a binding would
        # move it only once the key had gone up and back, after the next keys went astray.
        if (
            isinstance(event, events.Key | events.Paste)
            and not event.is_forwarded
            and self._shown_screen() is self.dashboard
            and self.dashboard.take_input(event)
        ):
            return
        await super().on_event(event)

    # -- the clock ------------------------------------------------------------------------------

    def _shown_screen(self) -> Screen | None:
        """The screen on top, or None while the app is shutting down and its screens are gone."""
        return self._screen_stack[-1] if self._screen_stack else None

    def _tick(self) -> None:
        screen = self._shown_screen()
        if screen is None:
            return
        now = self.clock()
        self.dashboard.tick(now)
        self._ticks += 1
        if self.exit_when_done and self._batch_ended():
            self.exit_when_done = False
            self._exit_with_code()
            return
        if self._ticks % self._merge_every == 0:
            self.merged.seal()
            if isinstance(screen, AggregateScreen):
                screen.tick(now)
        if isinstance(screen, TableScreen):
            screen.tick(now)

    def _sample(self) -> None:
        self.throughput.append(total_tokens_per_s(self.session.runs))
        screen = self._shown_screen()
        if isinstance(screen, SummaryScreen):
            screen.refresh_figures()

    # -- actions --------------------------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            bindings = [*DashboardScreen.BINDINGS, *self.BINDINGS, *StreamPane.BINDINGS]
            self.push_screen(HelpScreen(bindings, self.dashboard.program_info))

    def action_aggregate(self) -> None:
        if isinstance(self.screen, AggregateScreen):
            self.pop_screen()
        elif self.screen is self.dashboard:
            names = self.session.run_names()
            self.push_screen(AggregateScreen(self.merged, self.session.runs, self.settings, names=names))

    def action_table(self) -> None:
        if isinstance(self.screen, TableScreen):
            self.screen.dismiss(None)
        elif self.screen is self.dashboard:
            if not self.dashboard.panes:
                self.notify("No streams yet: ask a question first.", severity="warning")
                return
            self.push_screen(TableScreen(self.dashboard, self.settings, self.clock), self._open_stream)

    def _open_stream(self, number: int | None) -> None:
        if number is not None:
            self.dashboard.open_stream(number)

    def action_summary(self) -> None:
        if isinstance(self.screen, SummaryScreen):
            self.pop_screen()
        elif self.screen is self.dashboard:
            compare = self.compare_rows if self.session.variants else None
            goodput = bool(self.settings.slo)
            self.push_screen(
                SummaryScreen(self.session.summary, self.throughput, compare=compare, goodput=goodput)
            )

    def compare_rows(self) -> dict[str, dict]:
        """The compare table's rows: each variant's figures as they stand."""
        from tui.report import parse_slo
        from tui.streaming.compare import compare_table

        by_variant = {
            label: [run.metrics for run in runs] for label, runs in self.session.runs_by_variant().items()
        }
        slo = parse_slo(self.settings.slo) if self.settings.slo else None
        return compare_table(by_variant, duration=self.session.summary().duration, slo_ms=slo)

    def action_save(self) -> None:
        if not self.session.runs:
            self.notify("Nothing to save yet: ask a question first.", severity="warning")
            return
        self.push_screen(SaveScreen(default_path()), self._save)

    def _save(self, path: Path | None) -> None:
        if path is None:
            return
        try:
            written = save_session(path, self.session, self.settings)
        except OSError as error:
            self.notify(f"Could not save: {one_line(str(error))}", severity="error", markup=False)
            return
        streams = len(self.session.runs)
        self.notify(f"Saved {streams} stream{'s' * (streams != 1)} to {written}", markup=False)

    async def action_quit(self) -> None:
        live = [pane for pane in self.dashboard.panes if pane.live]
        if not live or self.interrupted:  # a second quit while streams close: now
            self._exit_with_code()
        elif not isinstance(self.screen, QuitScreen):
            self.push_screen(QuitScreen(len(live)), self._quit_confirmed)

    def action_interrupt(self) -> None:
        focused = self.focused
        # A text box (Input, TextArea) with a selection; by its parts, not importing TextArea.
        if getattr(focused, "selected_text", None) and hasattr(focused, "action_copy"):
            focused.action_copy()
        else:
            self.interrupt()

    def interrupt(self) -> None:
        """Ctrl+C: cancel every stream and quit, without asking; a second one quits at once."""
        if self.interrupted:
            self.force_quit()
        else:
            self._quit_confirmed(True)

    def _quit_confirmed(self, confirmed: bool | None) -> None:
        if confirmed:
            self.interrupted = True  # from now on, another quit or Ctrl+C does not wait
            self.run_worker(self._cancel_and_exit(), name="quit", group="quit", exit_on_error=False)

    async def _cancel_and_exit(self) -> None:
        """Cancel every live stream, let each end with its `Cancelled` event, then exit."""
        for pane in self.dashboard.panes:
            pane.cancel()
        streams = [worker for worker in self.workers if worker.group == "stream"]
        # None: `wait_for_complete([])` would wait for every worker, this one too (a DeadlockError,
        # and no exit), as an idle dashboard's hang-up or lost terminal did.
        if streams:
            try:
                await asyncio.wait_for(self.workers.wait_for_complete(streams), QUIT_GRACE_S)
            except TimeoutError:
                log.warning("streams still closing after %.0f s; quitting anyway", QUIT_GRACE_S)
        self._exit_with_code()

    def terminal_gone(self) -> None:
        """Nothing can be shown any more: end as a hang-up does, keeping what streamed."""
        if not self.interrupted:
            log.warning("the terminal has gone; quitting")
            self._quit_confirmed(True)

    def force_quit(self, _confirmed: bool = True) -> None:
        self.interrupted = True
        self._exit_with_code()

    def _batch_ended(self) -> bool:
        if self.dashboard.program_loading:
            return False
        runs = self.session.runs
        return len(runs) >= len(self.questions) and all(run.terminal is not None for run in runs)

    def _exit_with_code(self) -> None:
        code = self.exit_code()
        self.exit(code, return_code=code)

    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if any(pane.state_at(self.clock()) == "failed" for pane in self.dashboard.panes):
            return EXIT_FAILED
        return EXIT_OK

    def deliver_screenshot(
        self, filename: str | None = None, path: str | None = None, time_format: str | None = None
    ) -> str | None:
        """The palette's screenshot: into ~/Downloads when there is one, else the current directory."""
        if path is None:
            downloads = user_downloads_path()
            path = str(downloads if downloads.is_dir() else Path.cwd())
        return super().deliver_screenshot(filename, path, time_format)

    # -- command palette ------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if screen is not self.dashboard:
            return
        for binding in [*DashboardScreen.BINDINGS, *self.BINDINGS]:
            if isinstance(binding, Binding) and binding.description and binding.action not in QUITS:
                action = binding.action.removeprefix("app.")
                target = self if hasattr(self, f"action_{action}") else self.dashboard
                title = f"{binding.description} ({binding.key.split(',')[0]})"
                callback = partial(target.run_action, action)
                yield SystemCommand(title, binding.tooltip or binding.description, callback)


def run_dashboard(
    session: StreamSession,
    questions: list[str],
    *,
    prepare: Callable[[], Sequence[str]] | None = None,
    output: Path | None = None,
    exit_when_done: bool = False,
    schedule: Schedule | None = None,
    keep_history: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run the dashboard full screen until the user quits; returns the process exit code.

    `prepare`: run after the first frame (see `StreamDashboard`); what it raises is raised here,
    once the terminal is restored.
    `output`: the answers written to that file as they stream, as headless writes them.
    `exit_when_done`: quit by itself once every question given at start has ended.
    `schedule`: when each question given at start begins (open-loop arrivals, a replay's starts).
    `keep_history`: False for a replay, which is no new run.
    `clock`: what every figure is read on (a replay's runs at the recorded run's pace).
    SIGTERM and SIGHUP quit as a confirmed quit does (streams cancelled, partial answers kept,
    the terminal restored), with exit code 128 + the signal.
    """
    import signal

    from tui.output.answers import AnswerFile

    settings = session.settings
    mode = settings.mode or "interactive"
    history, recorder = None, None

    def record(asked: list[str]) -> None:
        nonlocal history, recorder
        history, recorder = begin_recording(session, mode, asked, sys.stderr)

    if prepare is None and keep_history:
        record(questions)
    app = StreamDashboard(
        settings,
        questions,
        session=session,
        exit_when_done=exit_when_done,
        prepare=prepare,
        on_prepared=record if keep_history else None,
        schedule=schedule,
        clock=clock,
    )
    answers = AnswerFile(output, several=True) if output is not None else None
    if answers is not None:
        session.watch(answers)
    caught: list[int] = []

    def quit_on_signal(signum: int, _frame: object) -> None:
        caught.append(signum)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise SystemExit(128 + signum) from None  # before or after the app's loop: nothing to save
        # The handler runs between two steps of the loop: the quit itself runs in it. A second
        # signal does not wait for the streams to close.
        loop.call_soon_threadsafe(app.interrupt)

    ending = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, quit_on_signal) for signum in ending}
    try:
        app.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if answers is not None:
            session.unwatch(answers)
            answers.close()
        if history is not None and recorder is not None:
            recorder.finish(interrupted=app.interrupted or bool(caught))
            history.close()
    if app.refusal is not None:
        raise app.refusal
    if caught:
        return 128 + caught[0]
    return app.return_code or EXIT_OK
