"""A set of streams that share one model, one adapter and one concurrency limit, run in this
process (`--workers 0`, the workers themselves, and the core's unit tests)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from tui.config import Settings
from tui.models.lm_factory import make_stream_listeners, model_status_updates
from tui.streaming.program_info import ProgramInfo
from tui.streaming.record import StreamJob
from tui.streaming.runner import StreamRun, program_for
from tui.streaming.session_base import (
    FAULTED_STREAM,
    RECOVERY_MODES,
    RECOVERY_SEED,
    EmptyQuestion,
    MissingInputs,
    SessionBase,
    StreamWatcher,
)

__all__ = [
    "FAULTED_STREAM", "RECOVERY_MODES", "RECOVERY_SEED", "EmptyQuestion", "MissingInputs",
    "StreamSession", "StreamWatcher",
]  # fmt: skip


class StreamSession(SessionBase):
    """Streams run as tasks of this process's event loop.

    The LM and adapter are built on first use, so a bad model string is reported when the
    first question is asked, as a one-line `ModelError`.
    """

    def __init__(self, settings: Settings, *, lm: Any = None, adapter: Any = None, seed: int | None = None):
        super().__init__(settings, seed=seed)
        self._lm = lm
        self._adapter = adapter
        self._limiter: asyncio.Semaphore | None = None
        self._program: Any = None

    def ensure_model(self) -> None:
        """Build the LM and adapter now; raises `tui.models.ModelError` on a bad model or key."""
        if self._lm is None or self._adapter is None:
            from tui.models.lm_factory import build_adapter, build_lm

            self._lm = self._lm or build_lm(self.settings)
            self._adapter = self._adapter or build_adapter(self.settings)

    def configure_for_plain_threads(self) -> None:
        """Make this session's model and adapter DSPy's defaults, which a thread the program
        starts itself (a ThreadPoolExecutor) sees instead of the streams' context: without them
        its calls failed with "No LM is loaded". Only where one session owns the process (a
        worker); their calls do not stream."""
        import dspy

        self.ensure_model()
        dspy.configure(lm=self._lm, adapter=self._adapter)

    def ensure_program(self) -> None:
        """Load the program now; raises `tui.programs.ProgramError` (one line) on a bad spec."""
        if self._program is None:
            self._program = program_for(self.settings)

    @property
    def program_info(self) -> ProgramInfo:
        self.ensure_program()
        return self._program.info

    def _make_run(self, job: StreamJob, *, limited: bool = True) -> StreamRun:
        self.ensure_model()
        self.ensure_program()
        if self._limiter is None:
            self._limiter = asyncio.Semaphore(self.settings.concurrency)
        self._mark_started()
        run = StreamRun(
            job,
            self.settings,
            self._lm,
            self._adapter,
            fault_rate=self.fault_rate,
            rng=random.Random(self._run_seed()),
            limiter=self._limiter if limited else None,
            listener_factory=make_stream_listeners,
            status_updates=model_status_updates,
            program=self._program,
        )
        run.observers = self._observers
        return run
