"""Reading a questions file: plain text (one a line) or JSONL (`{"question": ..., "id": ...}`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


class QuestionsFileError(ValueError):
    """The file cannot be used at all (missing, unreadable, no question in it)."""


@dataclass(frozen=True)
class Question:
    text: str
    id: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    """One value per input field of the program; empty for a one-input program fed `text`."""


@dataclass(frozen=True)
class QuestionsFile:
    questions: list[Question]
    problems: list[str]  # "questions.jsonl:7: not valid JSON", one per skipped line


def _is_jsonl(path: Path, lines: list[str]) -> bool:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return True
    first = next((line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")), "")
    return first.startswith("{")


def _from_json_line(line: str) -> Question:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise ValueError('expected an object like {"question": "..."}')
    text = record.get("question")
    if not isinstance(text, str) or not text.strip():
        raise ValueError('no "question" text')
    ident = record.get("id")
    return Question(text.strip(), None if ident is None else str(ident))


def _with_inputs(line: str, input_fields: tuple[str, ...]) -> Question:
    """A JSONL line for a program with several input fields: one key per field."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected an object with the keys {', '.join(input_fields)}")
    inputs: dict[str, str] = {}
    for name in input_fields:
        value = record.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError(f"no {name!r} (the program's inputs are {', '.join(input_fields)})")
        inputs[name] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    ident = record.get("id")
    return Question(inputs[input_fields[-1]].strip(), None if ident is None else str(ident), inputs)


def read_questions(path: str | Path, input_fields: tuple[str, ...] = ("question",)) -> QuestionsFile:
    """Parse the file; bad lines are reported with their number and skipped.

    With several `input_fields`, each JSONL line gives one value per field."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise QuestionsFileError(f"questions file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise QuestionsFileError(f"questions file {path} cannot be read: {reason}") from None
    jsonl = _is_jsonl(path, lines)
    questions: list[Question] = []
    problems: list[str] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not jsonl and len(input_fields) > 1:
            raise QuestionsFileError(
                f"{path}:{number}: the program has several inputs ({', '.join(input_fields)}): "
                "write JSONL, one object with those keys a line"
            )
        if not jsonl:
            questions.append(Question(line))
            continue
        try:
            if len(input_fields) > 1:
                questions.append(_with_inputs(line, input_fields))
            elif input_fields[0] != "question" and '"question"' not in line:
                question = _with_inputs(line, input_fields)
                questions.append(Question(question.text, question.id))
            else:
                questions.append(_from_json_line(line))
        except ValueError as exc:
            problems.append(f"{path}:{number}: {exc}; line skipped")
    if not questions:
        detail = f" ({problems[0]})" if problems else ""
        raise QuestionsFileError(f"questions file {path} holds no question{detail}")
    return QuestionsFile(questions, problems)
