"""StreamPane: one question, its answer as it streams, and its status line.

The pane's worker (one per stream, named `stream-N`, group "stream") reads the run's events
and only records them: tokens go into a pending list. The dashboard clock calls `tick()` a
fixed number of times a second, which moves pending text into the views and redraws the
status line, so the screen's work does not grow with the token rate.

While streaming, the answer is plain wrapped text (`StreamText`). Markdown is rendered where
someone reads: the current or maximised pane, and every answer once it has ended.

The answer is the program's final output field. Everything else it says (reasoning, other
fields, earlier stages, tool calls) streams into a trail above the answer, in arrival order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from tui.streaming.events import Cancelled, Done, Failed, Retrying, Status, StreamEvent, TerminalEvent, Token
from tui.streaming.figures import count, seconds
from tui.streaming.program_info import ProgramInfo
from tui.streaming.safe_text import HeldBack, hide_secrets
from tui.streaming.status_line import StatusFacts, retry_text
from tui.widgets.field_section import FieldSection, TimelineBlock, Trail, format_value
from tui.widgets.markdown_view import MarkdownView
from tui.widgets.merged_log import MergedLog, stream_colour
from tui.widgets.sanitize import one_line, sanitize
from tui.widgets.stream_status import StreamStatus
from tui.widgets.stream_text import StreamText

if TYPE_CHECKING:
    from tui.streaming.session_base import LiveStream as StreamRun

log = logging.getLogger(__name__)
TERMINAL_STATES = {Done: "done", Failed: "failed", Cancelled: "cancelled"}
WAITING_STATES = ("queued", "loading model")  # the run's states before its model starts on it
ENGINE_WORKING = "streaming"  # the local engine's note: it has started on this stream
# A status line's figures are redrawn every third tick, the panes taking turns (by number), so a
# frame redraws a third of them; a change of state is shown at the next tick whatever the turn.
STATUS_EVERY = 3
TIMELINE = ""  # the pending key of timeline lines: no output field has an empty name
PRINTED_MARK = "» "  # a line the program printed, on the timeline


class StreamPane(Vertical, can_focus=True):
    """A question's pane. `attach()` gives it a run to stream; `tick()` brings the screen up to date."""

    ALLOW_MAXIMIZE = True
    # A focused pane scrolls its answer by keyboard; End (or the bottom) follows the stream again.
    BINDINGS = [
        Binding("up", "scroll_answer('scroll_up')", "Scroll up", show=False),
        Binding("down", "scroll_answer('scroll_down')", "Scroll down", show=False),
        Binding("pageup", "scroll_answer('page_up')", "Page up", show=False),
        Binding("pagedown", "scroll_answer('page_down')", "Page down", show=False),
        Binding("home", "scroll_answer('scroll_home')", "Top", show=False),
        Binding("end", "scroll_answer('scroll_end')", "End, follow", show=False),
    ]
    DEFAULT_CSS = """
    StreamPane {
        height: 1fr;
    }
    """

    current: reactive[bool] = reactive(False)
    """The pane the dashboard's actions apply to, and the one rendered as Markdown while it streams."""

    def __init__(
        self,
        run: StreamRun,
        number: int,
        *,
        max_attempts: int = 1,
        buffer_size: int = 0,
        clock: Callable[[], float],
        merged: MergedLog | None = None,
    ) -> None:
        super().__init__(id=f"stream-{number}")
        self.question = hide_secrets(run.job.question)  # as every view shows it
        self.number = number
        self.info: ProgramInfo = run.info
        self.final_key = self.info.final_output.key
        # Stage marks say something only where there are several stages.
        self.shows_stages = len({field.predictor for field in self.info.outputs}) > 1
        self.max_attempts = max_attempts
        self.buffer_size = buffer_size
        self.clock = clock
        self.merged = merged
        self.run = run
        self.terminal: TerminalEvent | None = None
        self.note = ""
        self._retry: Retrying | None = None
        self._retry_at = 0.0
        self._got_token = False
        # What arrived since the last tick: the answer's text, and in order what goes on the
        # trail, (output field key, text) or (TIMELINE, a timeline line).
        self._answer_pending: list[str] = []
        self._pending: list[tuple[str, str]] = []
        self._held: dict[str, HeldBack] = {}  # per field: the word that may be part of a key
        self._trail_last: FieldSection | TimelineBlock | None = None
        self._answer = ""
        self._reset = False
        self._finalised = False
        self._showing_markdown = False
        self._ticks = 0
        self._status_state: str | None = None
        self._status_tokens = 0  # the token count the status line shows

    @property
    def label(self) -> str:
        """How messages name the stream: `Stream 3`, or `Q1 · gpt-4o-mini` with variants."""
        job = self.run.job
        return job.tag if job.variant else f"Stream {self.number}"

    def compose(self) -> ComposeResult:
        yield Static(Content(sanitize(self.question)), classes="question")
        yield Trail(classes="trail")
        yield Static(self.final_key, classes="answer-label", markup=False)
        yield StreamText(classes="answer-text")
        yield MarkdownView(classes="answer-markdown")
        yield Static("", classes="error-line", markup=False)
        yield StreamStatus(classes="stream-status")

    def on_mount(self) -> None:
        job = self.run.job
        if job.variant:  # a column of the compare grid: its question and its variant, in its colour
            colour = stream_colour(job.variant_no)
            # Numbered as in the variants bar: a narrow column cuts the label, never the number.
            label = f"[{job.variant_no}] {job.variant}"
            self.border_title = Content.assemble(f"Q{job.question_no} ", (label, f"bold {colour}"))
        else:
            self.border_title = f"Stream {self.number}"
        # Looked up once: tick() runs many times a second in every pane.
        self._answer_view = self.query_one(".answer-text", StreamText)
        self._markdown = self.query_one(".answer-markdown", MarkdownView)
        self._trail = self.query_one(".trail", Trail)
        self._trail.display = False
        # The answer is named when the program says more than its answer.
        others = [f for f in self.info.outputs if f.key != self.final_key]
        self.query_one(".answer-label").display = bool(others)
        self._error_line = self.query_one(".error-line", Static)
        self._status = self.query_one(StreamStatus)
        self._markdown.display = False
        self._error_line.display = False
        # Started once the pane is drawn: mounting many panes at once takes the CPU the streams'
        # first tokens need, and TTFT would measure the mount (the pane's wait is not the model's).
        self.call_after_refresh(self.attach, self.run)

    def action_scroll_answer(self, how: str) -> None:
        # At once, not animated: an animation still running when the next text arrives reads
        # as "at the end", and the view would follow the stream instead of staying put.
        view = self._markdown if self._showing_markdown else self._answer_view
        scroll = {
            "scroll_up": view.scroll_up,
            "scroll_down": view.scroll_down,
            "page_up": view.scroll_page_up,
            "page_down": view.scroll_page_down,
            "scroll_home": view.scroll_home,
            "scroll_end": view.scroll_end,
        }[how]
        scroll(animate=False)

    def watch_current(self, current: bool) -> None:
        self.set_class(current, "-current")

    # -- the stream ---------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        return self.terminal is None

    @property
    def answer(self) -> str:
        """The answer text of the attempt on screen (partial while streaming or after a failure)."""
        return self._answer + "".join(self._answer_pending)

    def status_shows(self, now: float) -> bool:
        """The status line shows the stream's state and token count as they are now."""
        return self._status_state == self.state_at(now) and self._status_tokens == self.run.metrics.tokens

    @property
    def has_pending(self) -> bool:
        """Text has arrived that the next tick draws."""
        return bool(self._answer_pending or self._pending)

    def attach(self, run: StreamRun) -> Worker[None]:
        """Stream `run` in this pane; a run already here is cancelled (its worker is exclusive)."""
        self.run = run
        self.terminal = None
        self.note = ""
        self._retry = None
        self._got_token = False
        self._pending.clear()
        self._answer_pending.clear()
        self._held.clear()
        self._reset = True
        self._finalised = False
        if self.merged is not None:
            job = run.job
            self.merged.add_question(
                self.number,
                one_line(hide_secrets(job.question)),
                tag=job.tag if job.variant else "",
                colour_no=job.variant_no,
            )
        return self.run_worker(
            self._consume(run),
            name=f"stream-{self.number}",
            group="stream",
            description=one_line(run.job.question)[:80],
            exit_on_error=False,
            exclusive=True,
        )

    def cancel(self) -> bool:
        """Ask the stream to stop; it ends with `Cancelled` and its partial answer. False if it had ended."""
        if self.terminal is not None:
            return False
        self.run.cancel()  # the worker keeps draining and receives the Cancelled event
        return True

    async def _consume(self, run: StreamRun) -> None:
        async for event in run.events():
            self._on_event(event)

    def _on_event(self, event: StreamEvent) -> None:
        if isinstance(event, Token):
            self._release_held(but=event.field)
            held = self._held.setdefault(event.field, HeldBack())
            self._add_text(event.field, held.feed(event.text))
            self._got_token = True
        elif isinstance(event, Status) and event.kind == "output":
            self._release_held()
            self._pending.append((TIMELINE, f"{PRINTED_MARK}{hide_secrets(event.message)}"))
        elif isinstance(event, Status):
            self.note = hide_secrets(event.message)
            if self._on_timeline(event):
                self._release_held()
                self._pending.append((TIMELINE, hide_secrets(event.message)))
        elif isinstance(event, Retrying):
            self._retry, self._retry_at = event, self.clock()
            self._got_token = False
            self._pending.clear()
            self._answer_pending.clear()
            self._held.clear()
            self._reset = True  # the next attempt streams from the start
            self._note(f"↻ {one_line(retry_text(event, event.delay))}")
        else:
            self._release_held()
            self._end(event)

    def _release_held(self, but: str | None = None) -> None:
        """The words held back, once something else comes after them: a field's text ends."""
        for key, held in self._held.items():
            if key != but and held.holding:
                self._add_text(key, held.flush())

    def _add_text(self, key: str, text: str) -> None:
        """Text of field `key`, secrets hidden, for the next tick (and the merged view)."""
        if not text:
            return
        if key == self.final_key:
            self._answer_pending.append(text)
        else:
            self._pending.append((key, text))
        if self.merged is not None:
            self.merged.add_text(self.number, key, text)

    def _on_timeline(self, status: Status) -> bool:
        """Tool calls and results, and where a stage starts (its end adds nothing to read)."""
        if status.kind == "tool":
            return True
        return status.kind == "stage" and self.shows_stages and not status.message.startswith("✓")

    def _end(self, event: TerminalEvent) -> None:
        self.terminal = event
        metrics = self.run.metrics
        if isinstance(event, Done):
            truncated = " · truncated" if metrics.truncated else ""
            self._note(f"✓ done{truncated} · {count(metrics.tokens, 'token')} · {seconds(metrics.e2e)}")
        elif isinstance(event, Failed):
            self._note(f"✗ failed: {one_line(event.error)}")
        else:
            self._note("■ cancelled")

    def _note(self, text: str) -> None:
        if self.merged is not None:
            self.merged.add_note(self.number, text)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and self.terminal is None:
            log.error("stream %s: the pane's worker failed", self.number, exc_info=event.worker.error)
            self._end(Failed(f"internal error: {one_line(str(event.worker.error))} (details in the log)"))

    # -- drawing ------------------------------------------------------------------------------

    def state_at(self, now: float) -> str:
        """What the stream is doing: queued, starting, loading model, streaming, retrying, or how it ended.

        Before the first token the run's state says whether it waits for a turn ("queued": the
        session's limit or the local model busy with another stream) or for the model to load;
        the local engine's "streaming" note means it is working on this stream, not streaming yet.
        """
        if self.terminal is not None:
            return TERMINAL_STATES[type(self.terminal)]
        if self._got_token:
            return "streaming"
        if self._retry is not None and now < self._retry_at + self._retry.delay:
            return "retrying"
        if self.note == ENGINE_WORKING:
            return "starting"
        state = self.run.metrics.state
        return state if state in WAITING_STATES else "starting"

    def tick(self, now: float, deadline: float, visible: bool, text_turn: bool = True) -> None:
        """Bring the pane up to date: called by the dashboard clock, a fixed number of times a second.

        `text_turn`: False when many panes stream at once and this tick is another pane's turn to
        draw its new text (the current pane, and a stream's end, are drawn at once)."""
        if not self.is_mounted:
            return
        answer_view, markdown = self._answer_view, self._markdown
        if self._reset:
            self._reset = False
            self._answer = ""
            answer_view.clear()
            markdown.reset()
            self._clear_trail()
            self._error_line.display = False
        if (
            self.has_pending
            and (visible or self.terminal is not None)
            and (text_turn or self.current or self.terminal is not None)
        ):
            # Off screen the text waits: a refresh of a hidden widget makes Textual arrange
            # every widget on the screen again.
            self._flush(answer_view)
        if self.terminal is not None and not self._finalised:
            self._finalise(answer_view)
        self._draw_markdown(markdown, answer_view, deadline, visible)
        self._ticks += 1
        if visible and self._trail.display:
            self._trail.keep_following()  # a section's growth is laid out after the lines came
        if visible:
            state = self.state_at(now)
            if state != self._status_state or (self._ticks + self.number) % STATUS_EVERY == 0:
                self._status_state = state
                self._status_tokens = self.run.metrics.tokens
                self._status.show(self._facts(now, state), now)

    def _flush(self, answer_view: StreamText) -> None:
        pending, self._pending = self._pending, []
        answer = "".join(self._answer_pending)
        self._answer_pending.clear()
        if answer:
            answer_view.write(answer)
            self._answer += answer
        if not pending:
            return
        timeline: list[str] = []  # consecutive timeline lines, added at once
        for key, text in pending:
            if key == TIMELINE:
                timeline.append(text)
                continue
            if timeline:
                self._timeline().add_lines(timeline)
                timeline = []
            self._section(key).write(text)
        if timeline:
            self._timeline().add_lines(timeline)
        self._trail.call_after_refresh(self._trail.keep_following)

    def _timeline(self) -> TimelineBlock:
        if not isinstance(self._trail_last, TimelineBlock):
            self._trail_add(TimelineBlock())
        assert isinstance(self._trail_last, TimelineBlock)
        return self._trail_last

    def _section(self, key: str) -> FieldSection:
        """The section `key`'s text goes on in: the last one, or a new one after whatever came between."""
        last = self._trail_last
        if isinstance(last, FieldSection) and last.key == key:
            return last
        output = self.info.output(key)
        section = FieldSection(key, reasoning=output is not None and output.reasoning)
        self._trail_add(section)
        return section

    def _trail_add(self, block: FieldSection | TimelineBlock) -> None:
        self._trail_last = block
        self._trail.display = True
        self._trail.mount(block)

    def _clear_trail(self) -> None:
        self._trail_last = None
        self._trail.remove_children()
        self._trail.display = False

    def _unstreamed_answer(self) -> str:
        """The final field's value when it does not stream (a program whose last output is a number)."""
        output = self.info.output(self.final_key)
        prediction = self.terminal.prediction if isinstance(self.terminal, Done) else None
        if output is None or output.streams or prediction is None:
            return ""
        try:
            return format_value(prediction[output.name])
        except (KeyError, TypeError):
            return ""

    def _show_unstreamed_fields(self) -> None:
        """Fields that do not stream (numbers, lists, Literal, Pydantic), formatted, from the Prediction."""
        prediction = self.terminal.prediction if isinstance(self.terminal, Done) else None
        if prediction is None:
            return
        for output in self.info.outputs:
            if output.streams or output.key == self.final_key:
                continue
            try:
                value = prediction[output.name]
            except (KeyError, TypeError):
                continue
            section = FieldSection(output.key)
            self._trail_add(section)
            section.write(hide_secrets(format_value(value)))

    def _finalise(self, answer_view: StreamText) -> None:
        self._finalised = True
        self._show_unstreamed_fields()
        delivered = hide_secrets(self.run.record.field_text(self.final_key) or self._unstreamed_answer())
        if delivered and delivered != self._answer:
            # What DSPy delivered is the answer; the stream may have held back a piece of it.
            self._answer = delivered
            answer_view.clear()
            answer_view.write(delivered)
        if isinstance(self.terminal, Failed):
            self._error_line.update(f"✗ {one_line(hide_secrets(self.terminal.error))}")
            self._error_line.display = True

    def _draw_markdown(self, markdown: MarkdownView, answer_view: StreamText, deadline: float, visible: bool):
        wanted = self.terminal is not None or self.current or self.screen.maximized is self
        if not wanted:
            if self._showing_markdown or markdown.source:
                self._show_markdown(False, markdown, answer_view)
                markdown.reset()
            return
        if not visible:
            return  # rendered when it comes into view
        if self._finalised and self._showing_markdown and markdown.finished:
            return  # the whole answer is on screen and will not change
        if not self._showing_markdown:
            markdown.fit_width(answer_view.scrollable_content_region.width)
        markdown.set_source(self._answer, final=self.terminal is not None)
        if markdown.advance(deadline) and not self._showing_markdown:
            self._show_markdown(True, markdown, answer_view)

    def _show_markdown(self, show: bool, markdown: MarkdownView, answer_view: StreamText) -> None:
        self._showing_markdown = show
        markdown.display = show
        answer_view.display = not show

    def _facts(self, now: float, state: str) -> StatusFacts:
        return StatusFacts(
            state=state,
            metrics=self.run.metrics,
            queue_fill=self.run.queue.qsize(),
            buffer_size=self.buffer_size,
            max_attempts=self.max_attempts,
            retry=self._retry if state == "retrying" else None,
            retry_left=(self._retry_at + self._retry.delay - now) if self._retry else 0.0,
            note=self.note,
            timeout=self.run.settings.timeout,
        )
