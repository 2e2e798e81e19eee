"""What every session is, wherever its streams run: the streams of one run, their questions and
the watchers that follow them. Imports no DSPy, so the front (dashboard, headless writers,
reports, history) can hold a session whose DSPy lives in worker processes.

`tui.streaming.session.StreamSession` runs the streams in this process; the engine client's
`tui.engine.RemoteSession` runs them in workers. Both hand out streams with the same face
(`LiveStream`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from tui.config import Settings
from tui.streaming.events import StreamEvent, TerminalEvent
from tui.streaming.metrics import RunSummary, StreamMetrics, summarize
from tui.streaming.program_info import ProgramInfo
from tui.streaming.record import StreamJob, StreamRecord

log = logging.getLogger(__name__)

RECOVERY_MODES = ("recovery", "demo")
RECOVERY_SEED = 2024
FAULTED_STREAM = 1  # its first attempt fails on purpose in the recovery and demo modes


class EmptyQuestion(ValueError):
    def __init__(self) -> None:
        super().__init__("the question is empty: type a question, then press Enter")


class MissingInputs(EmptyQuestion):
    """Some of the program's input fields have no value: the question box refuses it as empty."""

    def __init__(self, missing: list[str], *, several: bool = False) -> None:
        self.missing = missing
        if several:  # one text for a program with several input fields
            ValueError.__init__(self, f"the program's inputs are {', '.join(missing)}: give each a value")
            return
        ValueError.__init__(
            self, f"the program needs {', '.join(missing)}: give a value for each input field"
        )


class LiveStream(Protocol):
    """One question's stream as consumers see it, in this process or behind a worker."""

    job: StreamJob
    settings: Settings
    info: ProgramInfo
    metrics: StreamMetrics
    record: StreamRecord
    terminal: TerminalEvent | None
    tool_calls: list[str]
    forced_faults: int

    def start(self) -> Any: ...

    def cancel(self) -> None: ...

    def events(self) -> AsyncIterator[StreamEvent]: ...

    async def wait(self) -> TerminalEvent: ...


# Told of each event as the stream's consumer takes it (a writer following every stream).
EventObserver = Callable[[Any, StreamEvent], None]


def tell_observers(observers: list[EventObserver], run: Any, event: StreamEvent) -> None:
    """One observer that fails is logged; the stream and the other observers go on."""
    for observe in observers:
        try:
            observe(run, event)
        except Exception:
            log.exception("stream %s: an observer failed", run.job.stream_id)


class StreamWatcher(Protocol):
    """Follows every stream of a session, whoever consumes it: an `--output` file, headless stdout."""

    def started(self, run: Any) -> None: ...

    def feed(self, run: Any, event: StreamEvent) -> None: ...


class SessionBase:
    """Creates the streams of one run and keeps them for the summary and the saved transcript.

    Subclasses say where streams run: `_make_run`, `ensure_model`, `ensure_program`, `program_info`.
    """

    def __init__(self, settings: Settings, *, seed: int | None = None):
        self.settings = settings
        if seed is None and self.shows_recovery:
            seed = RECOVERY_SEED  # the same show every time
        self._rng = random.Random(seed)
        self.runs: list[Any] = []
        self.started_at: float | None = None
        self._watchers: list[StreamWatcher] = []
        self._observers: list[EventObserver] = []  # the watchers' `feed`, shared by every run
        self.clock: Callable[[], float] = time.monotonic  # the run's start and length are read on it

    # -- where streams run: the subclass's part -----------------------------------------

    def ensure_model(self) -> None:
        raise NotImplementedError

    def ensure_program(self) -> None:
        raise NotImplementedError

    @property
    def program_info(self) -> ProgramInfo:
        raise NotImplementedError

    def _make_run(self, job: StreamJob) -> LiveStream:
        raise NotImplementedError

    def expect(self, streams: int) -> None:
        """About this many streams will run at once: a session with workers starts them now."""

    def close(self) -> None:
        """Let go of what the session holds (worker processes); its streams have ended."""

    # -- shared ---------------------------------------------------------------------------

    def watch(self, watcher: StreamWatcher) -> None:
        """Tell `watcher` of every stream started from now on, and of each of its events."""
        self._watchers.append(watcher)
        self._observers.append(watcher.feed)

    def unwatch(self, watcher: StreamWatcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)
            self._observers.remove(watcher.feed)

    def _announce(self, run: LiveStream) -> None:
        for watcher in list(self._watchers):
            watcher.started(run)

    def use_clock(self, clock: Callable[[], float]) -> None:
        """Read the run's start and length on `clock`, as its streams' figures are (a frozen one in tests)."""
        self.clock = clock

    def _mark_started(self) -> None:
        if self.started_at is None:
            self.started_at = self.clock()

    def _run_seed(self) -> float:
        return self._rng.random()

    @property
    def shows_recovery(self) -> bool:
        """Recovery and demo modes on the embedded model fail some attempts on purpose, to show retries."""
        return self.settings.mode in RECOVERY_MODES and self.settings.is_local

    @property
    def fault_rate(self) -> float:
        """Random injected faults: recovery mode on the embedded model only."""
        if self.settings.mode == "recovery" and self.settings.is_local:
            return self.settings.fault_rate
        return 0.0

    @property
    def variants(self) -> tuple[str, ...]:
        """The labels of the variants each question runs on; () when there is one way to run."""
        return ()

    def new_runs(self, question_or_inputs: str | Mapping[str, str]) -> list[LiveStream]:
        """The streams one question starts: one, or one per variant."""
        return [self.new_run(question_or_inputs)]

    def new_run(self, question_or_inputs: str | Mapping[str, str]) -> LiveStream:
        """A stream for one question (the program's one input) or one value per input field."""
        self.ensure_program()
        question, inputs = self._job_inputs(question_or_inputs)
        return self.add_run(StreamJob(question, stream_id=len(self.runs) + 1, inputs=inputs))

    def add_run(self, job: StreamJob) -> LiveStream:
        """A stream for `job`, kept and announced to the watchers."""
        run = self._make_run(job)
        if self.shows_recovery and self.settings.max_retries > 0 and run.job.stream_id == FAULTED_STREAM:
            run.forced_faults = 1  # whatever the dice say, one stream shows a retry
        self.runs.append(run)
        self._announce(run)
        return run

    def rerun(self, earlier: LiveStream) -> LiveStream:
        """Ask `earlier`'s question again as the same stream: the new run takes its place and number.

        The earlier run is cancelled if still going; its attempts stay in the new run's record,
        so a saved session keeps them, while every count sees one outcome per stream.
        """
        run = self._make_run(earlier.job)
        if earlier.terminal is None and earlier.record.attempts and not earlier.record.attempts[-1].error:
            earlier.record.attempts[-1].error = "cancelled: asked again"  # before its cancel lands
        earlier.cancel()
        run.record.attempts = list(earlier.record.attempts)
        index = next((i for i, r in enumerate(self.runs) if r is earlier), None)
        if index is None:
            self.runs.append(run)
        else:
            self.runs[index] = run
        self._announce(run)
        return run

    def shown_question(self, given: str | Mapping[str, str]) -> str:
        """The text a stream is shown by: the question, or the last input field's value."""
        return self._job_inputs(given)[0]

    def _job_inputs(self, given: str | Mapping[str, str]) -> tuple[str, dict[str, str]]:
        """The text shown for the stream, and the value of every input field of the program."""
        fields = self.program_info.inputs
        if isinstance(given, str):
            question = given.strip()
            if not question:
                raise EmptyQuestion()
            if len(fields) > 1:
                raise MissingInputs(list(fields), several=True)
            return question, {fields[0]: question}
        inputs = {name: str(value) for name, value in given.items()}
        missing = [name for name in fields if not inputs.get(name, "").strip()]
        if missing and len(missing) == len(fields):
            raise EmptyQuestion()
        if missing:
            raise MissingInputs(missing)
        shown = inputs[fields[-1]].strip() if len(fields) > 1 else inputs[fields[0]].strip()
        return shown, {name: inputs[name] for name in fields}

    def runs_by_variant(self) -> dict[str, list[Any]]:
        """Each variant's streams, by label in the variants' order; {} when there are no variants."""
        grouped: dict[str, list[Any]] = {label: [] for label in self.variants}
        for run in self.runs:
            if run.job.variant in grouped:
                grouped[run.job.variant].append(run)
        return grouped

    def variant_summaries(self) -> dict[str, RunSummary]:
        """Each variant's summary over its own streams, by label; {} when there are no variants."""
        return {label: self._summary_of(runs) for label, runs in self.runs_by_variant().items()}

    def run_names(self) -> tuple[str, str]:
        """The model and program the run is named by: with variants, each of theirs once, in order."""
        each = self.variant_settings().values()
        if not each:
            return self.settings.model, self.settings.program
        models = ", ".join(dict.fromkeys(v.model for v in each))
        return models, ", ".join(dict.fromkeys(v.program for v in each))

    def variant_settings(self) -> dict[str, Settings]:
        """Each variant's settings, by label; {} when there are no variants."""
        return {}

    def summary(self) -> RunSummary:
        return self._summary_of(self.runs)

    def _summary_of(self, runs: list[Any]) -> RunSummary:
        """`runs`' figures, timed from the run's start to now, or to the last end once all ended."""
        duration = self.clock() - self.started_at if self.started_at is not None else 0.0
        ends = [r.metrics.ended_at for r in runs if r.metrics.ended_at is not None]
        if self.started_at is not None and ends and all(r.terminal for r in runs):
            duration = max(ends) - self.started_at
        return summarize([r.metrics for r in runs], duration)
