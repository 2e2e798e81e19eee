"""Reading a questions file: plain text (one a line) or JSONL (`{"question": ..., "id": ...}`).

The file is read lazily, a line at a time (`iter_questions`), so a huge file or a device such as
/dev/zero costs no more memory than one line: a line longer than `MAX_LINE_BYTES` stops the
read with a `file:line` error. A bad line (not UTF-8, not JSON, a missing input field) is
reported with its number and skipped.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

MAX_LINE_BYTES = 64 * 1024


class QuestionsFileError(ValueError):
    """The file cannot be used at all (missing, unreadable, no question in it, a line too long)."""


@dataclass(frozen=True)
class Question:
    text: str  # what is shown for the question
    id: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)  # one value per input field of the program
    line: int = 0


@dataclass(frozen=True)
class Problem:
    """A skipped line: `questions.jsonl:7: not valid JSON; line skipped`."""

    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class QuestionsFile:
    questions: list[Question]
    problems: list[str]  # "questions.jsonl:7: not valid JSON", one per skipped line


def _from_json_line(line: str, input_fields: Sequence[str]) -> Question:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected an object with the keys {', '.join(input_fields)}")
    inputs: dict[str, str] = {}
    for name in input_fields:
        value = record.get(name)
        if value is None and len(input_fields) == 1:
            value = record.get("question")
        if value is None or (isinstance(value, str) and not value.strip()):
            if len(input_fields) == 1:
                raise ValueError(f'no "{name}" text')
            raise ValueError(
                f"missing input field {name!r} (the program's inputs are {', '.join(input_fields)})"
            )
        inputs[name] = value.strip() if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    shown = record.get("question")
    text = shown.strip() if isinstance(shown, str) and shown.strip() else inputs[input_fields[-1]]
    ident = record.get("id")
    return Question(text, None if ident is None else str(ident), inputs)


def _lines(handle: BinaryIO, path: Path) -> Iterator[tuple[int, bytes]]:
    number = 0
    while True:
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise QuestionsFileError(
                f"{path}:{number}: line longer than {MAX_LINE_BYTES // 1024} KiB: is this a questions file?"
            )
        yield number, raw


def iter_questions(
    path: str | Path, input_fields: Sequence[str] = ("question",)
) -> Iterator[Question | Problem]:
    """Questions as they are read, and a `Problem` for each skipped line.

    JSONL keys map to the program's input fields; a plain-text line feeds its single input field.
    Raises `QuestionsFileError` when the file cannot be read at all, or holds no question.
    """
    path = Path(path)
    input_fields = tuple(input_fields) or ("question",)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise QuestionsFileError(f"questions file {path} does not exist") from None
    except OSError as exc:
        raise QuestionsFileError(f"questions file {path} cannot be read: {exc.strerror or exc}") from None
    jsonl: bool | None = True if path.suffix.lower() in (".jsonl", ".ndjson") else None
    found = 0
    first_problem: str | None = None
    with handle:
        try:
            for number, raw in _lines(handle, path):
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError:
                    problem = f"{path}:{number}: not UTF-8; line skipped"
                    first_problem = first_problem or problem
                    yield Problem(problem)
                    continue
                line = line.lstrip("\ufeff")
                if not line or line.startswith("#"):
                    continue
                if jsonl is None:
                    jsonl = line.startswith("{")
                    if not jsonl and len(input_fields) > 1:
                        raise QuestionsFileError(
                            f"questions file {path} is plain text, but the program takes "
                            f"{', '.join(input_fields)}: give JSONL with those keys"
                        )
                if not jsonl:
                    found += 1
                    yield Question(line, None, {input_fields[0]: line}, number)
                    continue
                try:
                    question = _from_json_line(line, input_fields)
                except ValueError as exc:
                    problem = f"{path}:{number}: {exc}; line skipped"
                    first_problem = first_problem or problem
                    yield Problem(problem)
                    continue
                found += 1
                yield Question(question.text, question.id, question.inputs, number)
        except OSError as exc:
            raise QuestionsFileError(f"questions file {path} cannot be read: {exc.strerror or exc}") from None
    if not found:
        detail = f" ({first_problem})" if first_problem else ""
        raise QuestionsFileError(f"questions file {path} holds no question{detail}")


def read_questions(path: str | Path, input_fields: Sequence[str] = ("question",)) -> QuestionsFile:
    """The whole file at once (small files, tests); bad lines are reported with their number and skipped."""
    questions: list[Question] = []
    problems: list[str] = []
    for item in iter_questions(path, input_fields):
        if isinstance(item, Problem):
            problems.append(item.message)
        else:
            questions.append(item)
    return QuestionsFile(questions, problems)


class QuestionFeed:
    """A run's questions, read as they are asked, `repeat` times over.

    Nothing is held but the question being asked, so a 100k-line file or `--repeat 100000000`
    starts at once in flat memory. The first two are read on creation: a file that holds no
    question (or whose first line never ends, like /dev/zero) fails before any stream starts,
    and `several` is known before the first answer is written.
    """

    def __init__(
        self, one_pass: Callable[[bool], Iterable[Any]], repeat: int = 1, *, total: int | None = None
    ) -> None:
        self._items = self._passes(one_pass, repeat)
        self._ahead = list(itertools.islice(self._items, 2))
        self.total = total  # how many, when known without reading them all (no file)

    @staticmethod
    def _passes(one_pass: Callable[[bool], Iterable[Any]], repeat: int) -> Iterator[Any]:
        for number in range(repeat):
            asked = 0
            for item in one_pass(number == 0):
                asked += 1
                yield item
            if not asked:
                return  # every later pass would be as empty

    @property
    def several(self) -> bool:
        return len(self._ahead) > 1

    def __bool__(self) -> bool:
        return bool(self._ahead)

    def __iter__(self) -> Iterator[Any]:
        while self._ahead:
            yield self._ahead.pop(0)
        yield from self._items
