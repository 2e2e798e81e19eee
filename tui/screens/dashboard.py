"""DashboardScreen: the question input, a pane per stream, the status bar and the batch progress."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.events import DescendantFocus
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from tui.config import Settings
from tui.models.errors import ModelError
from tui.streaming.events import Failed
from tui.streaming.program_info import ProgramInfo
from tui.streaming.session_base import EmptyQuestion, MissingInputs
from tui.streaming.session_base import SessionBase as StreamSession
from tui.widgets.batch_progress import BatchProgress
from tui.widgets.entry_form import EntryForm, FieldInput
from tui.widgets.global_status import GlobalStatusBar
from tui.widgets.merged_log import MergedLog
from tui.widgets.pane_grid import PaneGrid
from tui.widgets.program_outline import program_line
from tui.widgets.question_input import QuestionInput
from tui.widgets.sanitize import one_line
from tui.widgets.stream_pane import StreamPane
from tui.widgets.variants_bar import VariantsBar

log = logging.getLogger(__name__)

ATTENTION_STATES = ("failed", "retrying")  # told when it happens out of view
# Time the clock may spend rendering Markdown per tick, across panes (one piece may run past it).
MARKDOWN_BUDGET_S = 0.010
# With more streams than this on screen, each pane draws its new text every other tick, half of
# them each tick: a frame redraws half the panes, and the display lags by one tick more.
BUSY_PANES = 16


def empty_hint(info: ProgramInfo | None) -> str:
    """What to do first, in the words of the program's inputs."""
    if info is not None and len(info.inputs) > 1:
        ask = "Fill in the boxes below ([b]Tab[/b] moves between them) and press [b]Enter[/b]"
    else:
        ask = "Type a question below and press [b]Enter[/b]"
    return (
        f"[b]No streams yet.[/b]\n\n{ask}; ask more while answers stream.\n"
        "[b]F1[/b] lists the keys, [b]Ctrl+P[/b] opens the command palette."
    )


def loading_hint(model: str, program: str) -> Content:
    return Content.assemble(
        ("Loading ", "bold"),
        (one_line(model), "bold"),
        " and the program ",
        (one_line(program), "bold"),
        " in a worker process…\n\nType a question meanwhile: it starts once they are ready.",
    )


class DashboardScreen(Screen[None]):
    """The streams of one session, each in its own pane, fed by the app's clock through `tick()`."""

    AUTO_FOCUS = "QuestionInput"
    ALLOW_IN_MAXIMIZED_VIEW = "#top-bars, GlobalStatusBar, BatchProgress, QuestionInput, EntryForm, Footer"
    # The footer shows, most useful first, what fits 80 columns; the rest is in F1 and Ctrl+P.
    BINDINGS = [
        Binding("f3", "app.aggregate", "Merged", tooltip="All streams merged into one log"),
        Binding(
            "f4", "app.summary", "Summary", tooltip="The run's figures: TTFT, TPOT, ITL, E2EL, throughput"
        ),
        Binding("f7", "app.table", "Table", tooltip="One row a stream, sortable; Enter opens one"),
        Binding("f5", "retry_stream", "Retry", tooltip="Ask the current pane's question again"),
        Binding("ctrl+g", "cancel_stream", "Cancel", tooltip="Cancel the current stream"),
        Binding(
            "f2",
            "toggle_layout",
            "Max",
            tooltip="Maximise the current pane (comparing: its row); again: the grid",
        ),
        Binding("f6", "next_pane", "Next", show=False, tooltip="Focus the next pane"),
        Binding("shift+f6", "previous_pane", "Previous", show=False, tooltip="Focus the previous pane"),
        Binding(
            "f8", "close_pane", "Close", show=False, tooltip="Close the current pane (cancels its stream)"
        ),
        Binding("ctrl+y", "copy_answer", "Copy", show=False, tooltip="Copy the current pane's answer"),
    ]

    def __init__(
        self,
        session: StreamSession,
        settings: Settings,
        *,
        clock: Callable[[], float],
        merged: MergedLog,
        batch: bool = False,
        blink: bool = True,
        loading: bool = False,
    ) -> None:
        """`loading`: the program and model are still loading in a worker; `program_ready()`
        says when, and questions asked meanwhile wait for it."""
        super().__init__(id="dashboard")
        self.session = session
        self.settings = settings
        self.clock = clock
        self.merged = merged
        self.batch = batch
        self.blink = blink
        self.current_pane: StreamPane | None = None
        self._started_at: float | None = None
        self._grid: PaneGrid | None = None
        self._status_bar: GlobalStatusBar | None = None
        self._progress: BatchProgress | None = None
        self._announced: dict[int, tuple[object, ...]] = {}  # pane number -> what was told of it
        self._typing_into: QuestionInput | None = None  # the box typed in last
        self._ticks = 0
        self.program_loading = loading
        self.variants = session.variants  # a column each, a row a question
        self._waiting: list[str | Mapping[str, str]] = []  # asked while loading
        self.program_info: ProgramInfo | None = None
        if not loading:
            try:
                self.program_info = session.program_info
            except Exception:  # a bad program is reported when a question is asked, in one line
                log.exception("could not load the program")

    def compose(self) -> ComposeResult:
        settings = self.settings
        with Vertical(id="top-bars"):  # docked: a maximised pane (F2) keeps them above it
            model, program = self.session.run_names()
            yield GlobalStatusBar(
                model, program, settings.mode, id="global-status", brand=getattr(self.session, "brand", None)
            )
            if self.variants:
                yield VariantsBar(self.variants, id="variants-bar")
            yield BatchProgress(id="batch-progress")
        hint = loading_hint(model, program) if self.program_loading else empty_hint(self.program_info)
        yield Static(hint, id="empty-hint", markup=not self.program_loading)
        yield PaneGrid(id="panes", columns=len(self.variants) or None)
        info = self.program_info
        if info is not None and len(info.inputs) > 1:
            yield EntryForm(info.inputs, id="entry-form")
        else:
            yield QuestionInput(id="question")
        yield Footer(compact=True, show_command_palette=False)  # Ctrl+P still opens it

    def on_mount(self) -> None:
        self._status_bar = self.query_one(GlobalStatusBar)
        self._progress = self.query_one(BatchProgress)
        self._grid = self.query_one(PaneGrid)
        self._progress.display = self.batch
        boxes = list(self.query(QuestionInput))
        for box in boxes:
            box.cursor_blink = self.blink
        self._title_boxes()

    def _title_boxes(self) -> None:
        """The program, its inputs and outputs, where a newcomer looks first."""
        info = self.program_info
        if info is None:
            return
        first = self.query(QuestionInput).first()
        name = first.field if isinstance(first, FieldInput) else info.primary_input
        title = "Question" if name == "question" else name
        first.border_title = f"{title} · {program_line(info)}"

    def program_ready(self, info: ProgramInfo) -> None:
        """The worker has loaded the program: its entry boxes replace the one box, and what
        was asked while it loaded starts now."""
        self.program_loading = False
        self.program_info = info
        if len(info.inputs) > 1:
            box = self.query_one(QuestionInput)
            typed = box.value
            form = EntryForm(info.inputs, id="entry-form")
            self.mount(form, before=self.query_one(Footer))
            box.remove()
            self.call_after_refresh(self._focus_form, form, typed)
        self.call_after_refresh(self._title_boxes)
        hint = self.query_one("#empty-hint", Static)
        hint.update(Content.from_markup(empty_hint(info)))
        waiting, self._waiting = self._waiting, []
        if waiting:
            self.ask(waiting)

    def show_batch(self) -> None:
        self.batch = True
        if self._progress is not None:
            self._progress.display = True

    def _focus_form(self, form: EntryForm, typed: str) -> None:
        boxes = form.inputs
        for box in boxes:
            box.cursor_blink = self.blink
        boxes[0].value = typed
        boxes[0].focus()

    # -- asking ---------------------------------------------------------------------------------

    @property
    def panes(self) -> list[StreamPane]:
        return self._grid.panes if self._grid is not None else []

    @on(QuestionInput.Asked)
    def _asked(self, event: QuestionInput.Asked) -> None:
        event.stop()
        panes = self.ask(event.questions, typed=event.input)
        if event.pasted and panes:
            asked = len(panes)
            self.notify(f"{asked} question{'s' * (asked != 1)} from the paste", markup=False)

    @on(EntryForm.Asked)
    def _form_asked(self, event: EntryForm.Asked) -> None:
        event.stop()
        self.ask([event.inputs])

    def ask(
        self, questions: Iterable[str | Mapping[str, str]], *, typed: QuestionInput | None = None
    ) -> list[StreamPane]:
        """Start a stream and mount a pane for each question; refusals are shown, never raised.

        `typed`: the box the questions were typed in, which gets back a question that could not start.
        """
        panes = []
        questions = list(questions)
        if self.program_loading:
            self._waiting.extend(questions)
            self.notify(
                f"{len(self._waiting)} question{'s' * (len(self._waiting) != 1)} waiting:"
                " they start once the model has loaded",
                markup=False,
            )
            return panes
        for index, question in enumerate(questions):
            started = self._new_panes(question)
            if not started:
                if typed is not None:
                    texts = [q for q in questions[index:] if isinstance(q, str)]
                    typed.restore(" ".join(texts))  # one line: the box holds one
                break
            panes += started
        if panes:
            grid = self.query_one(PaneGrid)
            if grid.row_shown is not None:
                grid.show_row(None)
            grid.mount_all(panes)
            grid.fit_panes()
            self.query_one("#empty-hint").display = False
            self._make_current(panes[0] if len(panes) > 1 else panes[-1])
            self.call_after_refresh(grid.scroll_to_widget, panes[0], animate=False)
        return panes

    def _new_panes(self, question: str | Mapping[str, str]) -> list[StreamPane]:
        """The panes of one question's streams: one, or one per variant."""
        try:
            runs = self.session.new_runs(question)
        except EmptyQuestion as refusal:
            self._refuse(refusal)
            return []
        except ModelError as error:
            self.notify(one_line(str(error)), title="Model", severity="error", markup=False)
            return []
        except Exception as error:  # one line for the user, the traceback to the log
            log.exception("could not start a stream")
            self.notify(f"could not start the stream: {one_line(str(error))}", severity="error", markup=False)
            return []
        if self._started_at is None:
            self._started_at = self.clock()
        settings = self.settings
        panes = []
        for run in runs:
            run.metrics.clock = self.clock  # the dashboard's clock, so tests can freeze every figure
            pane = StreamPane(
                run,
                run.job.stream_id,  # the pane's number is the stream's, in the saved session too
                max_attempts=settings.max_retries + 1,
                buffer_size=settings.buffer_size,
                clock=self.clock,
                merged=self.merged,
            )
            panes.append(pane)
        return panes

    def _refuse(self, refusal: EmptyQuestion) -> None:
        hint = one_line(str(refusal))
        forms = self.query(EntryForm)
        if forms:
            forms.first().refuse(refusal.missing if isinstance(refusal, MissingInputs) else [], hint)
        else:
            self.query_one(QuestionInput).refuse(hint)

    # -- typing ---------------------------------------------------------------------------------

    def typing_target(self) -> QuestionInput:
        """Where typing goes: the box typed in last, else the first."""
        if self._typing_into is not None and self._typing_into.is_mounted:
            return self._typing_into
        return self.query(QuestionInput).first()

    def take_input(self, event: events.Key | events.Paste) -> bool:
        """Called by the app with each key and paste before it is delivered; True: handled here.

        Tab and Shift+Tab move the focus at once, so the keys after them land in the next box;
        a printable key or a paste while no box has focus moves the focus to the question box
        first, and is then delivered there.
        """
        if isinstance(event, events.Key) and event.key in ("tab", "shift+tab"):
            if event.key == "tab":
                self.focus_next()
            else:
                self.focus_previous()
            return True
        if (isinstance(event, events.Paste) or event.is_printable) and not isinstance(self.focused, Input):
            self.set_focus(self.typing_target(), scroll_visible=False)
        return False

    # -- the clock ------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Bring every pane, the status bar and the progress up to date."""
        if self._status_bar is None or self._progress is None:
            return  # not mounted yet
        shown = self.is_current
        deadline = time.perf_counter() + MARKDOWN_BUDGET_S
        # The widgets drawn in the last frame. Not `find_widget()`: for a pane scrolled out of
        # view that arranges every widget on the screen (the compositor's full map) each tick.
        visible = self._compositor.visible_widgets if shown else {}
        panes = self.panes
        self._ticks += 1
        busy = sum(pane.live and pane in visible for pane in panes) > BUSY_PANES  # type: ignore[operator]
        for pane in sorted(panes, key=lambda p: not p.current):
            turn = not busy or (self._ticks + pane.number) % 2 == 0
            pane.tick(now, deadline, pane in visible, turn)  # type: ignore[operator]
        if not shown:
            return
        runs = self.session.runs
        self._status_bar.show(runs, self._announce_offscreen(panes, visible, now))
        if self.batch:
            ended = sum(run.terminal is not None for run in runs)
            elapsed = now - self._started_at if self._started_at is not None else 0.0
            self._progress.show(ended, len(runs), elapsed)

    def _announce_offscreen(self, panes: list[StreamPane], visible: object, now: float) -> int:
        """Streams failing or retrying out of view: told once in a notification, counted in the header."""
        count = 0
        for pane in panes:
            state = pane.state_at(now)
            if state not in ATTENTION_STATES or pane in visible:  # type: ignore[operator]
                continue
            count += 1
            key = (state, pane.run.metrics.attempts, id(pane.run))
            if self._announced.get(pane.number) == key:
                continue
            self._announced[pane.number] = key
            attempts = pane.run.record.attempts
            error = (
                pane.terminal.error
                if isinstance(pane.terminal, Failed)
                else attempts[-1].error
                if attempts
                else ""
            )
            why = f": {one_line(error)}" if error else ""
            self.notify(
                f"{pane.label} {state} off screen{why} (F6 or the table, F7, to find it)",
                severity="error" if state == "failed" else "warning",
                markup=False,
            )
        return count

    # -- the current pane -----------------------------------------------------------------------

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        if isinstance(event.widget, QuestionInput):
            self._typing_into = event.widget
        for node in event.widget.ancestors_with_self:
            if isinstance(node, StreamPane):
                self._make_current(node)
                return

    def _make_current(self, pane: StreamPane | None) -> None:
        if pane is self.current_pane:
            return
        if self.current_pane is not None:
            self.current_pane.current = False
        self.current_pane = pane
        if pane is not None:
            pane.current = True
            if self.maximized is not None:
                self.maximize(pane, container=False)
            grid = self._grid
            if grid is not None and grid.row_shown not in (None, pane.run.job.question_no):
                grid.show_row(pane.run.job.question_no)

    def _current_or_warn(self) -> StreamPane | None:
        if self.current_pane is None:
            self.notify("No stream yet: ask a question first.", severity="warning")
        return self.current_pane

    def _step(self, step: int) -> None:
        panes = self.panes
        if not panes:
            return
        index = panes.index(self.current_pane) if self.current_pane in panes else -step
        pane = panes[(index + step) % len(panes)]
        pane.focus()
        self._make_current(pane)

    # -- actions --------------------------------------------------------------------------------

    def action_cancel_stream(self) -> None:
        pane = self._current_or_warn()
        if pane is not None and not pane.cancel():
            self.notify(f"{pane.label} has already ended.", severity="warning")

    def action_retry_stream(self) -> None:
        pane = self._current_or_warn()
        if pane is None:
            return
        try:
            run = self.session.rerun(pane.run)  # the same stream again: one pane, one outcome
        except (EmptyQuestion, ModelError) as error:
            self.notify(one_line(str(error)), severity="error", markup=False)
            return
        run.metrics.clock = self.clock
        pane.attach(run)

    async def action_close_pane(self) -> None:
        pane = self._current_or_warn()
        if pane is None:
            return
        panes = self.panes
        index = panes.index(pane)
        if self.maximized is pane:
            self.minimize()
        self._make_current(None)
        # With variants a row goes as one: the columns stay the variants.
        closing = (
            [p for p in panes if p.run.job.question_no == pane.run.job.question_no]
            if self.variants
            else [pane]
        )
        grid = self.query_one(PaneGrid)
        if grid.row_shown is not None:
            grid.show_row(None)
        await grid.remove_children(closing)  # their workers are cancelled with them, which cancels the runs
        panes = self.panes
        self.query_one(PaneGrid).fit_panes()
        if panes:
            self._make_current(panes[min(index, len(panes) - 1)])
        else:
            self.query_one("#empty-hint").display = True
            self.typing_target().focus()

    def open_stream(self, number: int) -> None:
        """Show stream `number`'s pane: current, focused and scrolled into view."""
        pane = next((p for p in self.panes if p.number == number), None)
        if pane is None:
            return
        pane.focus()
        self._make_current(pane)
        self.call_after_refresh(self.query_one(PaneGrid).scroll_to_widget, pane, animate=False)

    def action_next_pane(self) -> None:
        self._step(1)

    def action_previous_pane(self) -> None:
        self._step(-1)

    def action_toggle_layout(self) -> None:
        grid = self.query_one(PaneGrid)
        if self.variants:  # one question's row across the variants, or every row
            if grid.row_shown is not None:
                grid.show_row(None)
            elif (pane := self._current_or_warn()) is not None:
                grid.show_row(pane.run.job.question_no)
            if self.current_pane is not None:
                self.call_after_refresh(grid.scroll_to_widget, self.current_pane, animate=False)
        elif self.maximized is not None:
            self.minimize()
        elif (pane := self._current_or_warn()) is not None:
            self.maximize(pane, container=False)

    def action_copy_answer(self) -> None:
        pane = self._current_or_warn()
        if pane is None:
            return
        answer = pane.answer
        if not answer:
            self.notify(f"{pane.label} has no answer yet.", severity="warning")
            return
        self.app.copy_to_clipboard(answer)
        self.notify(f"Copied the answer of stream {pane.number} ({len(answer):,} characters).")
