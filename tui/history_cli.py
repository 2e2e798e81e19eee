"""`dspy-stream history`: list past runs, show one, compare two figure by figure.

    dspy-stream history [--limit N]          newest runs first
    dspy-stream history show RUN             settings, figures, every stream with its attempts
    dspy-stream history compare RUN_A RUN_B  figures side by side with the change of each

RUN is a run's number, `last`, or a negative number counting back from the newest (-1 = last).
Every form takes `--db PATH` to read another history database.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from tui.config import ConfigError
from tui.exit_codes import EXIT_OK, EXIT_USAGE
from tui.history import HistoryError, RunEntry, RunHistory, StoredRun, StoredStream, default_history_path
from tui.report import DISTRIBUTION_STATS, DISTRIBUTIONS
from tui.streaming.safe_text import visible


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def build_history_parser() -> argparse.ArgumentParser:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="the history database to read")
    parser = _Parser(
        prog="dspy-stream history", description="Past runs, kept in a local database.", parents=[db]
    )
    parser.add_argument("--limit", type=int, default=20, help="how many runs to list (20; 0 for all)")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    listing = commands.add_parser("list", parents=[db], help="list past runs, newest first")
    listing.add_argument("--limit", type=int, default=argparse.SUPPRESS, help="how many runs to list")
    show = commands.add_parser("show", parents=[db], help="print one run")
    show.add_argument("run", metavar="RUN", help="a run number, last, or -N counting back from the newest")
    compare = commands.add_parser("compare", parents=[db], help="two runs' figures side by side")
    compare.add_argument("run_a", metavar="RUN_A")
    compare.add_argument("run_b", metavar="RUN_B")
    return parser


def history_main(argv: Sequence[str], *, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Run `dspy-stream history ...`; `argv` is what follows the word `history`."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = build_history_parser().parse_args(list(argv))
        path = getattr(args, "db", None) or default_history_path()
        if not Path(path).exists():
            if args.command in ("show", "compare"):
                raise HistoryError(f"no runs in the history yet ({path})")
            out.write(f"no runs in the history yet ({path})\n")
            return EXIT_OK
        with RunHistory(path, read_only=True) as history:
            if args.command == "show":
                out.write(format_run(history.load_run(resolve_run(history, args.run))))
            elif args.command == "compare":
                a = history.load_run(resolve_run(history, args.run_a))
                b = history.load_run(resolve_run(history, args.run_b))
                out.write(format_comparison(a, b))
            else:
                entries = history.list_runs(args.limit or None)
                out.write(format_list(entries) if entries else f"no runs in the history yet ({path})\n")
        return EXIT_OK
    except (ConfigError, HistoryError) as exc:
        err.write(f"dspy-stream: error: {exc}\n")
        return EXIT_USAGE
    except sqlite3.Error as exc:
        err.write(f"dspy-stream: error: history database {path} cannot be read: {exc}\n")
        return EXIT_USAGE


def resolve_run(history: RunHistory, text: str) -> int:
    ids = history.run_ids()
    word = text.strip().lower()
    if word in ("last", "latest"):
        word = "-1"
    try:
        number = int(word)
    except ValueError:
        raise ConfigError(f"RUN {text!r}: give a run number, last, or -N (-1 is the newest)") from None
    if number < 0:
        if -number > len(ids):
            raise HistoryError(f"the history holds {len(ids)} runs; {text} goes back too far")
        return ids[number]
    return number


# -- formatting -----------------------------------------------------------------------------------


def _local(moment: Any) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def figure_unit(name: str) -> str:
    if name.endswith("_ms"):
        return ""
    if name == "duration":
        return "s"
    if name in ("request_throughput", "request_goodput"):
        return "req/s"
    if "tokens_per_s" in name or name == "output_throughput":
        return "tok/s"
    return ""


def figure_label(name: str) -> str:
    unit = figure_unit(name)
    return f"{name} ({unit})" if unit else name


def format_number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
    return str(value)


def format_change(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or isinstance(a, bool):
        return "" if a == b else "changed"
    delta = b - a
    if delta == 0:
        return "="
    sign = "+" if delta > 0 else "-"
    text = f"{sign}{format_number(abs(delta))}"
    if a:
        text += f" ({delta / abs(a) * 100:+.1f}%)"
    return text


def _table(rows: Sequence[Sequence[str]], right: Collection[int] = ()) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def format_list(entries: Sequence[RunEntry]) -> str:
    rows = [
        (
            "RUN",
            "STARTED",
            "STATUS",
            "MODEL",
            "MODE",
            "STREAMS",
            "DONE",
            "FAILED",
            "TOKENS",
            "SECONDS",
            "TOK/S",
        )
    ]
    for e in entries:
        s = e.summary or {}
        rows.append(
            (
                str(e.run_id),
                _local(e.started_at),
                e.status,
                visible(e.model),
                e.mode or "-",
                str(e.streams),
                str(e.states.get("done", 0)),
                str(e.states.get("failed", 0)),
                format_number(_tokens_of(e.status, s)),
                format_number(s.get("duration")),
                format_number(s.get("output_throughput")),
            )
        )
    return _table(rows, right={0, 5, 6, 7, 8, 9, 10})


def _tokens_of(status: str, summary: dict) -> object:
    """An interrupted run has few or no completed streams: show what it streamed."""
    if status != "finished" and summary.get("streamed_output_tokens") is not None:
        return summary["streamed_output_tokens"]
    return summary.get("total_output_tokens")


def _setting(name: str, value: object, mode: str | None) -> str:
    if name == "mode" and value is None:
        return repr(mode or "interactive")  # no --mode: the interactive dashboard
    return "(not set)" if value is None else repr(value)


def _header(run: StoredRun) -> str:
    e = run.entry
    states = ", ".join(f"{n} {state}" for state, n in sorted(e.states.items()))
    return (
        f"run {e.run_id} · {e.status} · {_local(e.started_at)} to {_local(e.finished_at)}"
        f" · {visible(e.model)} · {e.mode or '-'} · {e.streams} streams ({states or 'none'})\n"
    )


def format_run(run: StoredRun) -> str:
    parts = [_header(run), "\nsettings\n"]
    parts += [f"  {name} = {_setting(name, value, run.entry.mode)}\n" for name, value in run.settings.items()]
    parts.append("\nfigures\n")
    figures = dict(run.figures())
    spread = [("figure", *DISTRIBUTION_STATS)]
    for name, unit in DISTRIBUTIONS:
        keys = [f"{stat}_{name}{unit}" for stat in DISTRIBUTION_STATS]
        spread.append((f"{name}{unit}", *(format_number(figures.pop(key, None)) for key in keys)))
    rows = [(figure_label(name), format_number(value)) for name, value in figures.items()]
    parts.append(_indent_table(_table(rows, right={1})))
    parts.append("\n" + _indent_table(_table(spread, right=set(range(1, len(spread[0]))))))
    if run.variants:
        parts.append("\nfigures by variant\n")
        parts.append(_indent_table(_variant_table(run.variant_figures())))
    parts.append("\nstreams\n")
    for label in run.variants or [""]:
        if label:
            parts.append(f"\n  {visible(label)}\n")
        parts += [_format_stream(s) for s in run.streams if label == (s.figures.variant if s.figures else "")]
    return "".join(parts)


# The figures a per-variant table shows, most telling first.
VARIANT_FIGURES = (
    "completed", "failed", "median_ttft_ms", "p90_ttft_ms", "median_ttfo_ms",
    "median_stream_output_tokens_per_s", "output_throughput", "total_output_tokens", "total_cost_usd",
    "total_retries", "request_goodput",
)  # fmt: skip


def _variant_table(by_variant: dict[str, dict[str, Any]]) -> str:
    labels = list(by_variant)
    rows = [("figure", *(visible(label) for label in labels))]
    for name in VARIANT_FIGURES:
        values = [by_variant[label].get(name) for label in labels]
        if all(v is None for v in values):
            continue
        rows.append((figure_label(name), *(format_number(v) for v in values)))
    return _table(rows, right=set(range(1, len(labels) + 1)))


def _indent_table(table: str) -> str:
    return "".join(f"  {line}\n" for line in table.splitlines())


def _indent(text: str, prefix: str = "      ") -> str:
    return "\n".join(prefix + line for line in visible(text).splitlines()) or prefix


def _format_stream(stream: StoredStream) -> str:
    f = stream.figures
    facts = [stream.state, *(f.facts() if f is not None else [])]
    if stream.error and (f is None or not f.error):
        facts.append(stream.error)
    facts = [visible(fact) for fact in facts]
    tag = stream.stream_id
    if f is not None and f.variant:
        tag = f"{stream.stream_id} · {visible(f.variant)}"
    lines = [f"  [{tag}] " + " · ".join(facts), f"    Q: {visible(stream.question)}"]
    delivered = stream.attempts[-1].number if stream.attempts and stream.state == "done" else None
    for attempt in stream.attempts:
        if attempt.number == delivered:
            continue
        why = f" ({visible(attempt.error)})" if attempt.error else ""
        lines.append(f"    attempt {attempt.number}{why}, partial answer:")
        lines.append(_indent(attempt.text))
    if stream.state == "done" or not stream.attempts:
        lines.append("    A:")
        lines.append(_indent(stream.answer))
    return "\n".join(lines) + "\n"


def format_comparison(a: StoredRun, b: StoredRun) -> str:
    ida, idb = a.entry.run_id, b.entry.run_id
    parts = [_header(a), _header(b)]
    changed = [
        f"  {name}: {a.settings.get(name)!r} -> {b.settings.get(name)!r}\n"
        for name in dict.fromkeys([*a.settings, *b.settings])
        if a.settings.get(name) != b.settings.get(name)
    ]
    parts.append("\nsettings that differ\n" + ("".join(changed) or "  none\n"))
    fa, fb = a.figures(), b.figures()
    parts.append("\n" + _change_table(fa, fb, dict.fromkeys([*fa, *fb]), (ida, idb)))
    va_figures, vb_figures = a.variant_figures(), b.variant_figures()
    for label in [v for v in va_figures if v in vb_figures]:
        table = _change_table(
            va_figures[label], vb_figures[label], VARIANT_FIGURES, (ida, idb), known_only=True
        )
        parts.append(f"\n\nvariant {visible(label)}\n" + table)
    only = [v for v in [*va_figures, *vb_figures] if (v in va_figures) != (v in vb_figures)]
    if only:
        parts.append(f"\n\nvariants in one run only: {', '.join(visible(v) for v in only)}")
    return "".join(parts)


def _change_table(
    fa: dict[str, Any],
    fb: dict[str, Any],
    names: Iterable[str],
    runs: tuple[int, int],
    *,
    known_only: bool = False,
) -> str:
    """Figure by figure, run A against run B and the change; `known_only` leaves out a figure
    neither run has."""
    rows = [("figure", f"run {runs[0]}", f"run {runs[1]}", "change")]
    for name in names:
        va, vb = fa.get(name), fb.get(name)
        if known_only and va is None and vb is None:
            continue
        rows.append((figure_label(name), format_number(va), format_number(vb), format_change(va, vb)))
    return _table(rows, right={1, 2, 3})
