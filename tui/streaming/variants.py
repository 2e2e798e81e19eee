"""Variants: the same questions through several models, programs or saved states at once.

`--model` and `--program` (each `--load` after the program it loads into) may be given more than
once; every combination is a variant. Each variant is a session of its own (its own LM, adapter,
retry state, concurrency limit and workers), so one variant's rate limits never slow another;
`VariantSession` asks every question of all of them and keeps their streams in one list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from tui.config import ConfigError, Settings
from tui.streaming.program_info import ProgramInfo
from tui.streaming.record import StreamJob
from tui.streaming.session_base import LiveStream, SessionBase, StreamWatcher

LABEL_SEPARATOR = " · "


@dataclass(frozen=True)
class ProgramChoice:
    """One `--program`, with one of the states `--load` gives it (None: as written)."""

    program: str | None
    load: str | None = None


def program_choices(order: Sequence[tuple[str, str]]) -> list[ProgramChoice]:
    """`--program`/`--load` in the order given: each `--load` loads into the program before it
    (or the configured one); a program given no `--load` runs as written. With one `--program`,
    every `--load` is its own, wherever it stands."""
    named = [value for option, value in order if option == "program"]
    if len(named) <= 1:
        program = named[0] if named else None
        loads = [value for option, value in order if option == "load"]
        return [ProgramChoice(program, load) for load in loads] or [ProgramChoice(program)]
    programs: list[tuple[str | None, list[str]]] = []
    for option, value in order:
        if option == "program":
            programs.append((value, []))
        elif programs:
            programs[-1][1].append(value)
        else:
            programs.append((None, [value]))
    choices = []
    for program, loads in programs:
        choices += [ProgramChoice(program, load) for load in loads] or [ProgramChoice(program)]
    return choices


def variant_settings(
    base: Settings, models: Sequence[str], choices: Sequence[ProgramChoice]
) -> list[Settings]:
    """The settings of every variant: each model with each program choice, models first."""
    # Where `--load` is given, a program given none runs as written, not with another's state.
    loads_given = any(choice.load is not None for choice in choices)
    variants = []
    for model in models or [base.model]:
        for choice in choices or [ProgramChoice(None)]:
            changes: dict[str, Any] = {"model": model}
            if choice.program is not None:
                changes["program"] = choice.program
            if loads_given:
                changes["load"] = choice.load
            variants.append(base.replace(**changes))
    seen: set[tuple[str, str, str | None]] = set()
    for settings in variants:
        key = (settings.model, settings.program, settings.load)
        if key in seen:
            named = LABEL_SEPARATOR.join(part for part in key if part)
            raise ConfigError(f"the variant {named} is given twice: give each model or program once")
        seen.add(key)
    return variants


def short_model(model: str) -> str:
    """`openai/gpt-4o-mini` -> `gpt-4o-mini`; `local:/models/qwen.gguf` -> `qwen.gguf`."""
    if model.startswith("local:"):
        return PurePath(model.removeprefix("local:")).name or model
    return model.rsplit("/", 1)[-1] or model


def short_program(program: str) -> str:
    """`examples/qa.py:QA` -> `qa.py:QA`; a built-in or `package.module:NAME` as given."""
    path, colon, name = program.rpartition(":")
    if colon and ("/" in path or path.endswith(".py")):
        return f"{PurePath(path).name}:{name}"
    return program


def variant_label(settings: Settings, *others: Settings) -> str:
    """A short label naming what differs between `settings` and `others` (all: a lone variant)."""
    everyone = (settings, *others)
    parts = []
    if len({s.model for s in everyone}) > 1 or len(everyone) == 1:
        parts.append(short_model(settings.model))
    loads_differ = len({s.load for s in everyone}) > 1
    if len({s.program for s in everyone}) > 1 or loads_differ or len(everyone) == 1:
        parts.append(short_program(settings.program))
    if loads_differ:
        parts.append(PurePath(settings.load).name if settings.load else "as written")
    return LABEL_SEPARATOR.join(parts)


def variant_labels(variants: Sequence[Settings]) -> list[str]:
    """Short, and never two alike: where short names collide, the whole model or program shows."""
    labels = [variant_label(s, *variants) for s in variants]
    if len(set(labels)) == len(labels):
        return labels
    return [
        LABEL_SEPARATOR.join(part for part in (s.model, s.program, s.load or "") if part) for s in variants
    ]


class VariantSession(SessionBase):
    """Every question runs once on each variant's session; the streams are kept in one list, in
    the order asked (question 1 on every variant, then question 2 ...), numbered across them."""

    def __init__(self, settings: Settings, children: Sequence[tuple[str, SessionBase]]) -> None:
        super().__init__(settings)
        self.children = list(children)
        self._labels = tuple(label for label, _ in self.children)
        self._questions = 0

    @property
    def variants(self) -> tuple[str, ...]:
        return self._labels

    def child(self, label: str) -> SessionBase:
        return next(session for name, session in self.children if name == label)

    def ensure_program(self) -> None:
        for _, session in self.children:
            session.ensure_program()
        first = self.children[0][1].program_info.inputs
        for label, session in self.children[1:]:
            if session.program_info.inputs != first:
                raise ConfigError(
                    f"the variants take different inputs ({', '.join(first)} and"
                    f" {', '.join(session.program_info.inputs)} for {label}): compare programs"
                    " whose inputs are the same"
                )

    def ensure_model(self) -> None:
        for _, session in self.children:
            session.ensure_model()

    @property
    def program_info(self) -> ProgramInfo:
        return self.children[0][1].program_info

    def expect(self, streams: int) -> None:
        for _, session in self.children:
            session.expect(streams)

    def close(self) -> None:
        for _, session in self.children:
            session.close()

    def use_clock(self, clock: Callable[[], float]) -> None:
        super().use_clock(clock)
        for _, session in self.children:
            session.use_clock(clock)

    def watch(self, watcher: StreamWatcher) -> None:
        """Every variant's session announces its streams: the watcher follows each."""
        for _, session in self.children:
            session.watch(watcher)

    def unwatch(self, watcher: StreamWatcher) -> None:
        for _, session in self.children:
            session.unwatch(watcher)

    def new_run(self, question_or_inputs: str | Mapping[str, str]) -> LiveStream:
        raise TypeError("a question runs on every variant: ask with new_runs()")

    def new_runs(self, question_or_inputs: str | Mapping[str, str]) -> list[LiveStream]:
        self.ensure_program()
        question, inputs = self._job_inputs(question_or_inputs)
        self._questions += 1
        self._mark_started()
        runs = []
        for number, (label, session) in enumerate(self.children, 1):
            job = StreamJob(
                question, stream_id=len(self.runs) + 1, inputs=inputs,
                variant=label, variant_no=number, question_no=self._questions,
            )  # fmt: skip
            run = session.add_run(job)
            self.runs.append(run)
            runs.append(run)
        return runs

    def rerun(self, earlier: LiveStream) -> LiveStream:
        run = self.child(earlier.job.variant).rerun(earlier)
        index = next((i for i, r in enumerate(self.runs) if r is earlier), None)
        if index is None:
            self.runs.append(run)
        else:
            self.runs[index] = run
        return run

    def variant_settings(self) -> dict[str, Settings]:
        return {label: session.settings for label, session in self.children}
