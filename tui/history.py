"""Every run kept in a local SQLite database: settings (never keys), questions, the answer and the
partial answer of every attempt, each stream's figures and the run's summary.

A run is written as it goes: `begin_run` stores the run (and the questions it plans to ask),
each stream is stored in a transaction of its own when it ends, and `finish` stores the summary
and marks every stream that had not ended as interrupted. A run whose process died before
`finish` is closed the same way the next time the history is opened.

The schema version is SQLite's `PRAGMA user_version`. An older database is migrated in place,
one step at a time, in the same transaction as the version change; a newer one is left alone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import sqlite3
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tui.config import ConfigError
from tui.report import (
    StreamFigures,
    json_ready,
    parse_slo,
    stream_figures,
    summary_figures,
)
from tui.streaming.events import StreamEvent, is_terminal
from tui.streaming.safe_text import hide_secrets

if TYPE_CHECKING:
    from tui.streaming.session_base import LiveStream as StreamRun
    from tui.streaming.session_base import SessionBase as StreamSession

log = logging.getLogger(__name__)
ENDED_STATES = ("done", "failed", "cancelled")


class HistoryError(Exception):
    """The history database cannot be used; the message is one line for the user."""


def default_history_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("dspy-stream")) / "history.sqlite3"


# -- schema ---------------------------------------------------------------------------------------


def _run_script(db: sqlite3.Connection, script: str) -> None:
    # Not executescript(): it commits first, and a migration must stay inside its transaction.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _create_v1(db: sqlite3.Connection) -> None:
    """Version 1: runs and streams, with the delivered answer only."""
    _run_script(
        db,
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,
            model TEXT NOT NULL,
            mode TEXT,
            settings TEXT NOT NULL,
            summary TEXT
        );
        CREATE TABLE streams (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            stream_id INTEGER NOT NULL,
            question TEXT NOT NULL,
            state TEXT NOT NULL,
            answer TEXT NOT NULL DEFAULT '',
            error TEXT NOT NULL DEFAULT '',
            figures TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (run_id, stream_id)
        );
        """,
    )


def _v1_to_v2(db: sqlite3.Connection) -> None:
    """Version 2: the text of every attempt, so partial answers of retried streams are kept; the
    process that writes a run, so a run left behind by a dead process can be closed."""
    _run_script(
        db,
        """
        CREATE TABLE attempts (
            run_id INTEGER NOT NULL,
            stream_id INTEGER NOT NULL,
            number INTEGER NOT NULL,
            fields TEXT NOT NULL,
            error TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (run_id, stream_id, number),
            FOREIGN KEY (run_id, stream_id) REFERENCES streams(run_id, stream_id) ON DELETE CASCADE
        );
        ALTER TABLE runs ADD COLUMN owner TEXT;
        """,
    )
    # A version-1 answer becomes the stream's one known attempt.
    rows = db.execute("SELECT run_id, stream_id, answer, error FROM streams").fetchall()
    db.executemany(
        "INSERT INTO attempts (run_id, stream_id, number, fields, error) VALUES (?, ?, 1, ?, ?)",
        [(r[0], r[1], json.dumps({"answer": r[2]}), r[3]) for r in rows if r[2] or r[3]],
    )


# MIGRATIONS[n] takes a database at version n to version n + 1; a new database runs them all.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_create_v1, _v1_to_v2)
SCHEMA_VERSION = len(MIGRATIONS)


# -- what is read back ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredAttempt:
    number: int
    fields: dict[str, str]
    error: str = ""

    @property
    def text(self) -> str:
        return "\n\n".join(t for t in self.fields.values() if t)


@dataclass(frozen=True)
class StoredStream:
    stream_id: int
    question: str
    state: str
    answer: str
    error: str
    figures: StreamFigures | None
    attempts: list[StoredAttempt] = field(default_factory=list)


@dataclass(frozen=True)
class RunEntry:
    """One line of the history's list."""

    run_id: int
    started_at: datetime
    finished_at: datetime | None
    status: str  # running, finished or interrupted
    model: str
    mode: str | None
    states: dict[str, int]
    summary: dict[str, Any] | None

    @property
    def streams(self) -> int:
        return sum(self.states.values())


@dataclass(frozen=True)
class StoredRun:
    entry: RunEntry
    settings: dict[str, Any]
    streams: list[StoredStream]

    def figures(self) -> dict[str, Any]:
        """The summary saved at the end, or, for a run that never finished, one rebuilt from its streams."""
        if self.entry.summary is not None:
            return self.entry.summary
        return _rebuild_summary([s.figures for s in self.streams if s.figures], self.settings)

    @property
    def variants(self) -> list[str]:
        """The labels of the run's variants, in their order; [] for a run without variants."""
        labels = [s.figures.variant for s in self.streams if s.figures is not None and s.figures.variant]
        return list(dict.fromkeys(labels))

    def variant_figures(self) -> dict[str, dict[str, Any]]:
        """Each variant's summary figures, from its own streams."""
        return {
            label: _rebuild_summary(
                [s.figures for s in self.streams if s.figures is not None and s.figures.variant == label],
                self.settings,
            )
            for label in self.variants
        }


def _rebuild_summary(figures: list[StreamFigures], settings: dict[str, Any]) -> dict[str, Any]:
    ends = [f.started_at + f.e2el for f in figures if f.started_at is not None and f.e2el is not None]
    return summary_figures(figures, max(ends, default=0.0), _slo_or_none(settings.get("slo")))


def _slo_or_none(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    try:
        return parse_slo(text)
    except ConfigError:
        return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_gone(owner: str | None) -> bool:
    """Whether the process that wrote a run has ended (only decidable on the same host)."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _settings_json(session: StreamSession) -> dict[str, Any]:
    """The run's settings as kept; with variants, each variant's model, program and state too."""
    saved = session.settings.public_dict()
    variants = session.variant_settings()
    if variants:
        saved["variants"] = {
            label: {"model": v.model, "program": v.program, "load": v.load} for label, v in variants.items()
        }
    return saved


def _figures_json(figures: StreamFigures) -> str:
    data = figures.as_dict()
    for duplicated in ("question", "generated_text", "stream_id", "state", "error"):
        data.pop(duplicated)
    return json.dumps(data)


# -- the database ---------------------------------------------------------------------------------


class RunHistory:
    """The history database: open it, `begin_run` for each run, read runs back."""

    def __init__(
        self, path: Path | str | None = None, *, read_only: bool = False, notes: IO[str] | None = None
    ) -> None:
        self.path = Path(path) if path is not None else default_history_path()
        self.read_only = read_only
        self._lock = threading.RLock()
        if read_only:
            self._db = self._open_read_only()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            if not self._intact():
                self._db.close()
                self._move_aside(notes)
                self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"history database {self.path} cannot be used: {exc}") from None
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"history database {self.path} cannot be opened: {exc}") from None
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
            # After the version check: switching to WAL rewrites the header of a file we may not own.
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._close_abandoned_runs()
        except HistoryError:
            self._db.close()
            raise
        except sqlite3.Error as exc:
            self._db.close()
            raise HistoryError(f"history database {self.path} cannot be used: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        # Autocommit; every write opens its own transaction (`_transaction`).
        return sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)

    def _open_read_only(self) -> sqlite3.Connection:
        """Reading never writes: `mode=ro`, and on a read-only medium (no -shm can be made) `immutable`."""
        if not self.path.exists():
            raise HistoryError(f"history database {self.path} does not exist")
        uri = self.path.resolve().as_uri()
        last: sqlite3.Error | None = None
        for flags in ("mode=ro", "mode=ro&immutable=1"):
            try:
                db = sqlite3.connect(f"{uri}?{flags}", uri=True, timeout=10, check_same_thread=False)
                db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                check = db.execute("PRAGMA quick_check").fetchone()
                if check is None or check[0] != "ok":
                    db.close()
                    raise HistoryError(
                        f"history database {self.path} is damaged; the next run moves it aside"
                    )
                return db
            except sqlite3.DatabaseError as exc:
                last = exc
                if "malformed" in str(exc) or "not a database" in str(exc):
                    raise HistoryError(
                        f"history database {self.path} is damaged ({exc}); the next run moves it aside"
                    ) from None
        raise HistoryError(f"history database {self.path} cannot be read: {last}")

    def _intact(self) -> bool:
        try:
            row = self._db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError as exc:
            # Another program's file, or one in use, is left alone; only a damaged database is moved.
            if any(word in str(exc) for word in ("locked", "busy", "not a database")):
                raise
            return False
        return row is not None and row[0] == "ok"

    def _move_aside(self, notes: IO[str] | None) -> None:
        """A damaged file is kept (renamed) for whoever wants to rescue it; a fresh one takes its place."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm", "-journal"):
            extra = self.path.with_name(self.path.name + suffix)
            if extra.exists():
                os.replace(extra, aside.with_name(aside.name + suffix))
        log.warning("history database %s was damaged; moved to %s", self.path, aside)
        (notes or sys.stderr).write(
            f"dspy-stream: warning: the history database was damaged; moved it to {aside}"
            " and started a new one\n"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> RunHistory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise HistoryError(
                    f"history database {self.path} is schema {version}, from a newer dspy-stream "
                    f"(this one reads up to {SCHEMA_VERSION}): upgrade dspy-stream"
                )
            for step in MIGRATIONS[version:]:
                step(db)
            if version != SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _close_abandoned_runs(self) -> None:
        running = self._db.execute("SELECT id, owner FROM runs WHERE status = 'running'").fetchall()
        for run_id, owner in running:
            if _owner_gone(owner):
                with self._transaction() as db:
                    _mark_unended_interrupted(db, run_id)
                    db.execute(
                        "UPDATE runs SET status = 'interrupted', finished_at = ? WHERE id = ?",
                        (_now(), run_id),
                    )

    # -- writing ----------------------------------------------------------------------------------

    def begin_run(
        self, session: StreamSession, *, mode: str | None = None, questions: Sequence[str] = ()
    ) -> RunRecorder:
        """Store a new run; `questions` (if known up front) are stored as pending streams.

        The planned questions take the stream ids the session will give them (the next ones).
        """
        settings = session.settings
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO runs (started_at, status, model, mode, settings, owner)"
                " VALUES (?, 'running', ?, ?, ?, ?)",
                (
                    _now(),
                    session.run_names()[0],
                    mode or settings.mode,
                    json.dumps(_settings_json(session)),
                    _owner(),
                ),
            )
            run_id = cursor.lastrowid
            assert run_id is not None
            first = len(session.runs) + 1
            # With variants each question is a stream per variant, numbered question by question.
            questions = [q for q in questions for _ in session.variants or ("",)]
            db.executemany(
                "INSERT INTO streams (run_id, stream_id, question, state) VALUES (?, ?, ?, 'pending')",
                [(run_id, first + i, q.strip()) for i, q in enumerate(questions)],
            )
        recorder = RunRecorder(self, run_id, session)
        session.watch(recorder)  # each stream is stored as its end is read
        return recorder

    def _store_stream(
        self, db: sqlite3.Connection, run_id: int, figures: StreamFigures, run: StreamRun
    ) -> None:
        db.execute(
            "INSERT INTO streams (run_id, stream_id, question, state, answer, error, figures)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, stream_id) DO UPDATE SET question = excluded.question,"
            " state = excluded.state, answer = excluded.answer, error = excluded.error,"
            " figures = excluded.figures",
            (
                run_id,
                figures.stream_id,
                figures.question,
                figures.state,
                figures.generated_text,
                figures.error,
                _figures_json(figures),
            ),
        )
        db.execute("DELETE FROM attempts WHERE run_id = ? AND stream_id = ?", (run_id, figures.stream_id))
        db.executemany(
            "INSERT INTO attempts (run_id, stream_id, number, fields, error) VALUES (?, ?, ?, ?, ?)",
            [
                (
                    run_id,
                    figures.stream_id,
                    a.number,
                    json.dumps({name: hide_secrets(text) for name, text in a.text.items()}),
                    hide_secrets(a.error),
                )
                for a in run.record.attempts
            ],
        )

    # -- reading ----------------------------------------------------------------------------------

    def list_runs(self, limit: int | None = None) -> list[RunEntry]:
        """The newest runs first."""
        rows = self._db.execute(
            "SELECT id, started_at, finished_at, status, model, mode, summary FROM runs"
            " ORDER BY id DESC LIMIT ?",
            (-1 if limit is None else limit,),
        ).fetchall()
        states = self._states([row[0] for row in rows])
        return [_entry(row, states.get(row[0], {})) for row in rows]

    def _states(self, run_ids: list[int]) -> dict[int, dict[str, int]]:
        found: dict[int, dict[str, int]] = {}
        if not run_ids:
            return found
        marks = ",".join("?" * len(run_ids))
        for run_id, state, count in self._db.execute(
            f"SELECT run_id, state, COUNT(*) FROM streams WHERE run_id IN ({marks}) GROUP BY run_id, state",
            run_ids,
        ):
            found.setdefault(run_id, {})[state] = count
        return found

    def run_ids(self) -> list[int]:
        """Every run id, oldest first."""
        return [row[0] for row in self._db.execute("SELECT id FROM runs ORDER BY id")]

    def load_run(self, run_id: int) -> StoredRun:
        row = self._db.execute(
            "SELECT id, started_at, finished_at, status, model, mode, summary, settings"
            " FROM runs WHERE id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise HistoryError(
                f"no run {run_id} in the history ({self.path}); `dspy-stream history` lists them"
            )
        attempts: dict[int, list[StoredAttempt]] = {}
        for stream_id, number, fields_json, error in self._db.execute(
            "SELECT stream_id, number, fields, error FROM attempts"
            " WHERE run_id = ? ORDER BY stream_id, number",
            (run_id,),
        ):
            attempts.setdefault(stream_id, []).append(StoredAttempt(number, json.loads(fields_json), error))
        streams = [
            StoredStream(
                stream_id=sid,
                question=question,
                state=state,
                answer=answer,
                error=error,
                figures=_stream_figures(sid, question, state, answer, error, figures_json),
                attempts=attempts.get(sid, []),
            )
            for sid, question, state, answer, error, figures_json in self._db.execute(
                "SELECT stream_id, question, state, answer, error, figures FROM streams"
                " WHERE run_id = ? ORDER BY stream_id",
                (run_id,),
            )
        ]
        states = dict(Counter(s.state for s in streams))
        return StoredRun(_entry(row[:7], states), json.loads(row[7]), streams)


def _entry(row: Sequence[Any], states: dict[str, int]) -> RunEntry:
    run_id, started, finished, status, model, mode, summary = row
    return RunEntry(
        run_id=run_id,
        started_at=datetime.fromisoformat(started),
        finished_at=datetime.fromisoformat(finished) if finished else None,
        status=status,
        model=model,
        mode=mode,
        states=states,
        summary=json.loads(summary) if summary else None,
    )


def _stream_figures(
    stream_id: int, question: str, state: str, answer: str, error: str, figures_json: str
) -> StreamFigures | None:
    data = json.loads(figures_json or "{}")
    if not data:
        return None
    data |= {"stream_id": stream_id, "question": question, "state": state}
    data |= {"generated_text": answer, "error": error}
    try:
        return StreamFigures.from_dict(data)
    except TypeError:  # figures written by an older version, missing a field
        return None


def _mark_unended_interrupted(db: sqlite3.Connection, run_id: int) -> None:
    marks = ",".join("?" * len(ENDED_STATES))
    db.execute(
        f"UPDATE streams SET state = 'interrupted' WHERE run_id = ? AND state NOT IN ({marks})",
        (run_id, *ENDED_STATES),
    )


class RunRecorder:
    """Writes one run of a session into the history as its streams end."""

    def __init__(self, history: RunHistory, run_id: int, session: StreamSession) -> None:
        self.history = history
        self.run_id = run_id
        self.session = session
        self._recorded: set[int] = set()
        self.warnings: IO[str] = sys.stderr
        self._warned = False

    def record_stream(self, run: StreamRun) -> None:
        """Store one stream (its figures, answer and every attempt) in a transaction of its own.

        A stream that has not ended is stored as interrupted.
        """
        figures = StreamFigures.of(run, self.session.started_at)
        if run.terminal is None:
            figures = _with_state(figures, "interrupted")
        with self.history._transaction() as db:
            self.history._store_stream(db, self.run_id, figures, run)
        if run.terminal is not None:
            self._recorded.add(run.job.stream_id)

    # The recorder watches the session's streams (a StreamWatcher); it never starts one.

    def started(self, run: StreamRun) -> None:
        self._recorded.discard(run.job.stream_id)  # a re-run: the stream is live again

    def feed(self, run: StreamRun, event: StreamEvent) -> None:
        """Store a stream the moment its end is read."""
        if is_terminal(event):
            try:
                self.record_stream(run)
            except (sqlite3.Error, HistoryError) as exc:
                self.warn(exc)

    def finish(self, *, interrupted: bool = False) -> None:
        """Store every stream not stored yet and the run's summary, in one transaction.

        Streams that have not ended, and planned questions never asked, become interrupted.
        The history is a convenience: a database that fails (a full disk) costs one warning.
        """
        self.session.unwatch(self)
        try:
            self._finish(interrupted=interrupted)
        except sqlite3.Error as exc:
            self.warn(exc)

    def warn(self, exc: BaseException) -> None:
        """One warning a run, however many writes fail; the details go to the log."""
        log.warning("history write failed: %s", exc)
        if not self._warned:
            self._warned = True
            self.warnings.write(
                f"dspy-stream: warning: the history database {self.history.path} cannot be written"
                f" ({exc}); the run goes on without it\n"
            )
            self.warnings.flush()

    def _finish(self, *, interrupted: bool) -> None:
        session = self.session
        pending = [run for run in session.runs if run.job.stream_id not in self._recorded]
        unended = any(run.terminal is None for run in session.runs)
        slo = _slo_or_none(session.settings.slo)
        summary = summary_figures(stream_figures(session), session.summary().duration, slo)
        with self.history._transaction() as db:
            for run in pending:
                figures = StreamFigures.of(run, session.started_at)
                if run.terminal is None:
                    figures = _with_state(figures, "interrupted")
                self.history._store_stream(db, self.run_id, figures, run)
            _mark_unended_interrupted(db, self.run_id)
            planned_left = db.execute(
                "SELECT COUNT(*) FROM streams WHERE run_id = ? AND state = 'interrupted'", (self.run_id,)
            ).fetchone()[0]
            status = "interrupted" if interrupted or unended or planned_left else "finished"
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, summary = ? WHERE id = ?",
                (status, _now(), json.dumps(json_ready(summary)), self.run_id),
            )
        self._recorded.update(run.job.stream_id for run in pending if run.terminal is not None)


def _with_state(figures: StreamFigures, state: str) -> StreamFigures:
    return dataclasses.replace(figures, state=state)


def begin_recording(
    session: StreamSession, mode: str, questions: Sequence[str], warnings: IO[str]
) -> tuple[RunHistory | None, RunRecorder | None]:
    """Keep this session's run in the history, each stream as it ends.

    A history that cannot be opened costs the run nothing but a warning line.
    """
    history: RunHistory | None = None
    try:
        history = RunHistory(notes=warnings)
        recorder = history.begin_run(session, mode=mode, questions=questions)
    except (HistoryError, sqlite3.Error) as exc:
        if history is not None:
            history.close()
        warnings.write(f"dspy-stream: warning: {exc}; this run is not kept in the history\n")
        return None, None
    recorder.warnings = warnings
    return history, recorder
