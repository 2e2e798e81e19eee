"""Run reports: the figures of vLLM's `bench serve`, written as JSON or CSV, and a JSONL progress feed.

JSON: one object whose keys are vLLM's saved-result keys where vLLM has one (`date`, `model_id`,
`num_prompts`, `request_throughput`, `mean_ttft_ms`, `ttfts`, `itls` ...). As in vLLM, summary
latencies are in milliseconds (`*_ms`) and per-request lists (`ttfts`, `itls`, `latencies`) in
seconds. Summary figures describe the successful streams only (vLLM's rule); per-request lists
describe every stream as it happened, so a failed stream shows its partial text and tokens, and
a figure that was never measured is null.

CSV: two files. PATH has one row per stream; PATH with `.summary.csv` in place of `.csv`
(report.csv -> report.summary.csv) has the run's figures as `figure,value` rows, then the
settings as `settings.<name>` rows.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.config import ConfigError
from tui.streaming.figures import rate, seconds
from tui.streaming.metrics import Distribution
from tui.streaming.record import prediction_json
from tui.streaming.safe_text import hide_secrets, hide_secrets_in
from tui.streaming.timeline import ThroughputTimeline, TimedStream

if TYPE_CHECKING:  # the history CLI reads reports without importing DSPy
    from tui.streaming.session_base import LiveStream as StreamRun
    from tui.streaming.session_base import SessionBase as StreamSession

SLO_FIGURES = ("ttft", "tpot", "e2el")  # the figures vLLM's --goodput accepts
_SLO_UNITS_MS = {"ms": 1.0, "s": 1000.0, "us": 0.001}
_SLO_ITEM = re.compile(r"^\s*([a-z0-9_]+)\s*[=:]\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*([a-z]*)\s*$", re.I)
DISTRIBUTION_STATS = ("mean", "median", "std", "min", "max", "p50", "p90", "p95", "p99")
# Figures given as a distribution across streams (ITL: across all gaps), with their key suffix.
DISTRIBUTIONS = (
    ("ttft", "_ms"),
    ("ttfo", "_ms"),
    ("tpot", "_ms"),
    ("itl", "_ms"),
    ("e2el", "_ms"),
    ("stream_output_tokens_per_s", ""),
)


def parse_slo(text: str) -> dict[str, float]:
    """`ttft=500ms,tpot=50ms` -> {"ttft": 500.0, "tpot": 50.0}, in milliseconds.

    Names are vLLM's goodput names; a bare number is milliseconds, as in vLLM's `--goodput`;
    `s` and `us` units are accepted, as is vLLM's `ttft:500` spelling.
    """
    items = [item for item in re.split(r"[,\s]+", text.strip()) if item]
    if not items:
        raise ConfigError("slo is empty: give targets such as ttft=500ms,tpot=50ms")
    targets: dict[str, float] = {}
    for item in items:
        match = _SLO_ITEM.match(item)
        if match is None:
            raise ConfigError(f"slo {item!r}: expected NAME=VALUE such as ttft=500ms")
        name, number, unit = match.group(1).lower(), float(match.group(2)), match.group(3).lower()
        if name not in SLO_FIGURES:
            raise ConfigError(f"slo {item!r}: unknown figure {name!r}; use {', '.join(SLO_FIGURES)}")
        if unit and unit not in _SLO_UNITS_MS:
            raise ConfigError(f"slo {item!r}: unknown unit {unit!r}; use ms, s or us")
        if number <= 0:
            raise ConfigError(f"slo {item!r}: the target must be more than 0")
        if name in targets:
            raise ConfigError(f"slo {text.strip()!r}: {name} is given twice")
        targets[name] = number * _SLO_UNITS_MS[unit or "ms"]
    return targets


@dataclass(frozen=True)
class StreamFigures:
    """One stream's figures, in seconds, as the report and the history keep them."""

    stream_id: int
    question: str
    state: str
    attempts: int
    output_len: int
    started_at: float | None  # seconds after the run's start
    ttft: float | None
    tpot: float | None
    e2el: float | None
    output_tokens_per_s: float | None
    itls: list[float] = field(default_factory=list)
    field_ttfts: dict[str, float] = field(default_factory=dict)
    lm_ttft: float | None = None
    cache_hit: bool = False
    queue_fill_max: int = 0
    finish_reason: str | None = None  # the LM's: "length" when cut by the token limit
    queue_time: float = 0.0  # waiting for a turn on the model, not part of TTFT
    generated_text: str = ""
    error: str = ""
    ttfo: float | None = None
    input_len: int | None = None  # prompt tokens as the provider counted them
    provider_output_len: int | None = None  # completion tokens as the provider counted them
    cost_usd: float | None = None  # None where LiteLLM knows no price
    inputs: dict[str, str] = field(default_factory=dict)
    field_texts: dict[str, str] = field(default_factory=dict)  # every streamed field, by key
    prediction: dict[str, Any] = field(default_factory=dict)  # the final Prediction, as JSON values
    tool_calls: list[str] = field(default_factory=list)
    variant: str = ""  # with variants: the label of the one this stream ran on

    @property
    def success(self) -> bool:
        return self.state == "done"

    @classmethod
    def of(cls, run: StreamRun, run_started_at: float | None) -> StreamFigures:
        m = run.metrics
        started = None
        if m.started_at is not None and run_started_at is not None:
            started = m.started_at - run_started_at
        return cls(
            stream_id=run.job.stream_id,
            question=hide_secrets(run.job.question),
            state=m.state,
            attempts=m.attempts,
            output_len=m.tokens,
            started_at=started,
            ttft=m.ttft,
            tpot=m.tpot,
            e2el=m.e2e if m.ended_at is not None else None,
            output_tokens_per_s=m.tokens_per_s,
            itls=list(m.itls),
            field_ttfts=dict(m.field_ttfts),
            lm_ttft=m.lm_ttft,
            cache_hit=m.cache_hit,
            queue_fill_max=m.queue_fill_max,
            finish_reason=m.finish_reason,
            queue_time=m.queue_time,
            generated_text=hide_secrets(run.record.text),
            error=hide_secrets(m.error or run.record.error),
            ttfo=m.ttfo,
            input_len=m.input_tokens,
            provider_output_len=m.provider_output_tokens,
            cost_usd=m.cost_usd,
            inputs=hide_secrets_in(dict(run.job.program_inputs)),
            field_texts=hide_secrets_in(dict(run.record.current)),
            prediction=hide_secrets_in(prediction_json(run.record.prediction)),
            tool_calls=hide_secrets_in(list(getattr(run, "tool_calls", []))),
            variant=run.job.variant,
        )

    def as_dict(self) -> dict[str, Any]:
        # Not `dataclasses.asdict`, which deep-copies each ITL: most of the front's work as a
        # stream's figures went into the history. The values are only read.
        return {name: _shallow_copy(getattr(self, name)) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StreamFigures:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def facts(self) -> list[str]:
        """The stream's figures in the words of its status line (`tui.streaming.status_line`),
        for `history show`'s stream line: `60 tok · 30.0 tok/s · TTFT 0.14s · 2.21s`."""
        parts = [
            f"{self.output_len} tok",
            rate(self.output_tokens_per_s),
            f"TTFT {seconds(self.ttft)}",
            seconds(self.e2el),
        ]
        if self.attempts > 1:
            parts.append(f"{self.attempts} attempts")
        if self.cache_hit:
            parts.append("cache hit")
        if self.finish_reason == "length" and self.success:
            parts.append("truncated")
        if self.error:
            parts.append(self.error)
        return parts

    def meets(self, slo: Mapping[str, float]) -> bool:
        """vLLM's goodput rule: a successful request that meets every target (TPOT of one token is 0)."""
        if not self.success:
            return False
        measured = {"ttft": self.ttft, "tpot": self.tpot or 0.0, "e2el": self.e2el}
        return all(measured[name] is not None and measured[name] * 1000 <= ms for name, ms in slo.items())


def _shallow_copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    return dict(value) if isinstance(value, dict) else value


def _total(values: Sequence[float | int | None]) -> float | int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def stream_figures(session: StreamSession) -> list[StreamFigures]:
    return [StreamFigures.of(run, session.started_at) for run in session.runs]


def _distribution(name: str, values: Sequence[float], scale: float, unit: str) -> dict[str, float | None]:
    stats = Distribution.of(values).as_dict(scale)
    return {f"{stat}_{name}{unit}": stats.get(stat) for stat in DISTRIBUTION_STATS}


def summary_figures(
    streams: Sequence[StreamFigures], duration: float, slo: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """The run-wide figures, named as vLLM names them (ours added where vLLM has none)."""
    done = [s for s in streams if s.success]
    total_tokens = sum(s.output_len for s in done)
    timeline = ThroughputTimeline.of(
        TimedStream(s.started_at, s.ttft, s.itls, s.e2el)
        for s in done
        if s.started_at is not None and s.ttft is not None and s.e2el is not None
    )
    states = Counter(s.state for s in streams)

    def per_second(count: float) -> float:
        return count / duration if duration > 0 else 0.0

    figures: dict[str, Any] = {
        "duration": duration,
        "completed": len(done),
        "failed": states["failed"],
        "cancelled": states["cancelled"],
        "interrupted": len(streams) - len(done) - states["failed"] - states["cancelled"],
        "total_output_tokens": total_tokens,
        # Every stream's tokens, ended or not: what an interrupted run had streamed.
        "streamed_output_tokens": sum(s.output_len for s in streams),
        "truncated": sum(s.finish_reason == "length" for s in done),
        "request_throughput": per_second(len(done)),
        "request_goodput": per_second(sum(s.meets(slo) for s in done)) if slo else None,
        "output_throughput": per_second(total_tokens),
        "max_output_tokens_per_s": timeline.max_output_tokens_per_s,
        "max_concurrent_requests": timeline.max_concurrent_requests,
        "error_rate": states["failed"] / len(streams) if streams else 0.0,
        "total_retries": sum(max(s.attempts - 1, 0) for s in streams),
        "total_cache_hits": sum(s.cache_hit for s in streams),
        "max_queue_fill": max((s.queue_fill_max for s in streams), default=0),
        "total_input_tokens": _total([s.input_len for s in streams]),
        "total_provider_output_tokens": _total([s.provider_output_len for s in streams]),
        "total_cost_usd": _total([s.cost_usd for s in streams]),
    }
    values = {
        "ttft": [s.ttft for s in done],
        "tpot": [s.tpot for s in done],
        "itl": [gap for s in done for gap in s.itls],
        "e2el": [s.e2el for s in done],
        "stream_output_tokens_per_s": [s.output_tokens_per_s for s in done],
        "ttfo": [s.ttfo for s in done],
    }
    for name, unit in DISTRIBUTIONS:
        figures.update(_distribution(name, values[name], 1000 if unit == "_ms" else 1, unit))
    return figures


def per_request_lists(streams: Sequence[StreamFigures], slo: Mapping[str, float] | None) -> dict[str, list]:
    lists: dict[str, list] = {
        "stream_ids": [s.stream_id for s in streams],
        "questions": [s.question for s in streams],
        "output_lens": [s.output_len for s in streams],
        "start_times": [s.started_at for s in streams],
        "ttfts": [s.ttft for s in streams],
        "tpots": [s.tpot for s in streams],
        "itls": [s.itls for s in streams],
        "latencies": [s.e2el for s in streams],
        "output_tokens_per_s": [s.output_tokens_per_s for s in streams],
        "successes": [s.success for s in streams],
        "generated_texts": [s.generated_text for s in streams],
        "errors": [s.error for s in streams],
        "attempts": [s.attempts for s in streams],
        "states": [s.state for s in streams],
        "cache_hits": [s.cache_hit for s in streams],
        "field_ttfts": [s.field_ttfts for s in streams],
        "lm_ttfts": [s.lm_ttft for s in streams],
        "queue_fill_max": [s.queue_fill_max for s in streams],
        "finish_reasons": [s.finish_reason for s in streams],
        "queue_times": [s.queue_time for s in streams],
        "ttfos": [s.ttfo for s in streams],
        "input_lens": [s.input_len for s in streams],
        "provider_output_lens": [s.provider_output_len for s in streams],
        "cost_usd": [s.cost_usd for s in streams],
        "inputs": [s.inputs for s in streams],
        "field_texts": [s.field_texts for s in streams],
        "predictions": [s.prediction for s in streams],
        "tool_calls": [s.tool_calls for s in streams],
        "variant": [s.variant for s in streams],
    }
    if slo:
        lists["slo_met"] = [s.meets(slo) for s in streams]
    return lists


def _slo_of(session: StreamSession, slo: Mapping[str, float] | None) -> dict[str, float] | None:
    if slo is not None:
        return dict(slo)
    return parse_slo(session.settings.slo) if session.settings.slo else None


def build_report(
    session: StreamSession, *, slo: Mapping[str, float] | None = None, date: datetime | None = None
) -> dict[str, Any]:
    """The whole report as one JSON-ready dict: header, summary figures, per-request lists."""
    from tui import __version__

    settings = session.settings
    targets = _slo_of(session, slo)
    streams = stream_figures(session)
    model_id, program = session.run_names()
    report: dict[str, Any] = {
        "date": (date or datetime.now()).strftime("%Y%m%d-%H%M%S"),
        "tool": f"dspy-stream {__version__}",
        "model_id": model_id,
        "program": program,
        "mode": settings.mode,
        "num_prompts": len(streams),
        "max_concurrency": settings.concurrency,
        "request_rate": settings.request_rate if settings.request_rate is not None else "inf",
        "burstiness": settings.burstiness,
        "buffer_size": settings.buffer_size,
        "slo": {f"{name}_ms": ms for name, ms in (targets or {}).items()},
        **summary_figures(streams, session.summary().duration, targets),
        "variants": list(session.variants),
        "per_variant": per_variant_figures(session, streams, targets),
        **per_request_lists(streams, targets),
        "settings": settings.public_dict(),
    }
    return json_ready(report)


def per_variant_figures(
    session: StreamSession, streams: Sequence[StreamFigures], slo: Mapping[str, float] | None
) -> dict[str, dict[str, Any]]:
    """Each variant's model, program and state, and the summary figures of its streams alone."""
    summaries = session.variant_summaries()
    blocks = {}
    for label, settings in session.variant_settings().items():
        own = [s for s in streams if s.variant == label]
        duration = summaries[label].duration
        blocks[label] = {
            "model_id": settings.model,
            "program": settings.program,
            "load": settings.load,
            "num_prompts": len(own),
            **summary_figures(own, duration, slo),
        }
    return blocks


def json_ready(value: Any) -> Any:
    """NaN and infinity are not JSON: an unmeasurable figure is null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        # Most items are plain (a list of 32,000 ITLs): no call for those.
        return [v if type(v) in _PLAIN or (type(v) is float and _finite(v)) else json_ready(v) for v in value]
    return value


_PLAIN = (int, str, bool, type(None))
_finite = math.isfinite


def report_json(report: Mapping[str, Any]) -> str:
    """The report as JSON, one top-level figure a line.

    Each value is written compact by the C encoder: indenting its lists (one ITL per line, 32,000
    of them) took Python's own encoder 80 ms at the end of every run.
    """
    lines = [f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}" for key, value in report.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def report_format(path: Path) -> str:
    """The format, `json` or `csv`, from the file name; check this before a run, so a bad name fails early."""
    suffix = Path(path).suffix.lower()
    if suffix in (".json", ".csv"):
        return suffix[1:]
    raise ConfigError(f"report {path}: name the file .json or .csv to choose the format")


def summary_csv_path(path: Path) -> Path:
    return Path(path).with_suffix(".summary.csv")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def stream_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One CSV row per stream, latencies in milliseconds."""
    fields = sorted({name for ttfts in report["field_ttfts"] for name in ttfts})
    rows = []
    for i, question in enumerate(report["questions"]):
        itl_ms = Distribution.of(report["itls"][i]).as_dict(1000)
        row: dict[str, Any] = {
            "stream": report["stream_ids"][i],
            "variant": report.get("variant", [""] * (i + 1))[i],
            "question": question,
            "state": report["states"][i],
            "success": report["successes"][i],
            "cache_hit": report["cache_hits"][i],
            "attempts": report["attempts"][i],
            "output_len": report["output_lens"][i],
            "start_time_ms": _ms(report["start_times"][i]),
            "ttft_ms": _ms(report["ttfts"][i]),
            "tpot_ms": _ms(report["tpots"][i]),
            "e2el_ms": _ms(report["latencies"][i]),
            "mean_itl_ms": itl_ms.get("mean"),
            "p50_itl_ms": itl_ms.get("p50"),
            "p99_itl_ms": itl_ms.get("p99"),
            "max_itl_ms": itl_ms.get("max"),
            "output_tokens_per_s": report["output_tokens_per_s"][i],
            "queue_fill_max": report["queue_fill_max"][i],
        }
        row["lm_ttft_ms"] = _ms(report["lm_ttfts"][i])
        row["queue_time_ms"] = _ms(report.get("queue_times", [None] * (i + 1))[i])
        row["finish_reason"] = report.get("finish_reasons", [None] * (i + 1))[i]
        row["ttfo_ms"] = _ms(report.get("ttfos", [None] * (i + 1))[i])
        for key in ("input_lens", "provider_output_lens", "cost_usd"):
            row[key.removesuffix("s") if key != "cost_usd" else key] = report.get(key, [None] * (i + 1))[i]
        for name in fields:
            row[f"{name}_ttft_ms"] = _ms(report["field_ttfts"][i].get(name))
        if "slo_met" in report:
            row["slo_met"] = report["slo_met"][i]
        row["error"] = report["errors"][i]
        row["generated_text"] = report["generated_texts"][i]
        rows.append(row)
    return rows


def summary_rows(report: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """`figure,value` rows: every scalar of the report, then the settings."""
    rows = [(k, v) for k, v in report.items() if not isinstance(v, list | dict)]
    rows += [(f"slo.{k}", v) for k, v in report["slo"].items()]
    for label, figures in report.get("per_variant", {}).items():
        rows += [(f"variant.{label}.{k}", v) for k, v in figures.items() if not isinstance(v, list | dict)]
    rows += [(f"settings.{k}", v) for k, v in report["settings"].items()]
    return rows


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection"),
# also after leading spaces; a tab or carriage return first is another way in.
_FORMULA_START = re.compile(r"^[\s]*[=+\-@\t\r\uff1d\uff0b\uff0d\uff20]")


def csv_cell(value: Any) -> Any:
    """A cell safe to open in a spreadsheet: text that would run as a formula gets a leading `'`."""
    if value is None:
        return ""
    if isinstance(value, str) and _FORMULA_START.match(value):
        return "'" + value
    return value


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows([[csv_cell(v) for v in row] for row in rows])
    return buffer.getvalue()


def _write_atomically(path: Path, text: str) -> None:
    """Readers never see half a report, and a failed write leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(path: Path, session: StreamSession, *, slo: Mapping[str, float] | None = None) -> list[Path]:
    """Write the report as JSON or CSV (chosen by the file name); returns the files written.

    `slo` (milliseconds, from `parse_slo`) defaults to the session's `slo` setting.
    """
    path = Path(path)
    kind = report_format(path)
    report = build_report(session, slo=slo)
    if kind == "json":
        _write_atomically(path, report_json(report))
        return [path]
    rows = stream_rows(report)
    header = list(rows[0]) if rows else ["stream", "question", "state"]
    _write_atomically(path, _csv_text(header, [list(r.values()) for r in rows]))
    summary_path = summary_csv_path(path)
    _write_atomically(summary_path, _csv_text(["figure", "value"], summary_rows(report)))
    return [path, summary_path]


def progress_record(session: StreamSession, elapsed: float) -> dict[str, Any]:
    """The running figures of a session, as one progress line holds them."""
    metrics = [run.metrics for run in session.runs]
    done = [m for m in metrics if m.state == "done"]
    tokens = sum(m.tokens for m in done)
    # Every stream with a first token, as on the dashboard: a long run has TTFTs before any ends.
    ttft = Distribution.of(m.ttft for m in metrics).as_dict(1000)
    record: dict[str, Any] = {
        "time": datetime.now().astimezone().isoformat(timespec="milliseconds"),
        "elapsed_s": round(elapsed, 3),
        "num_prompts": len(metrics),
        "states": dict(Counter(m.state for m in metrics)),
        "completed": len(done),
        "failed": sum(m.state == "failed" for m in metrics),
        "total_output_tokens": tokens,
        "streamed_tokens": sum(m.tokens for m in metrics),
        "live_output_tokens_per_s": sum(m.live_tokens_per_s() for m in metrics),
        "request_throughput": len(done) / elapsed if elapsed > 0 else 0.0,
        "output_throughput": tokens / elapsed if elapsed > 0 else 0.0,
        "total_retries": sum(max(m.attempts - 1, 0) for m in metrics),
        "mean_ttft_ms": ttft.get("mean"),
        "median_ttft_ms": ttft.get("median"),
        "p99_ttft_ms": ttft.get("p99"),
    }
    return json_ready(record)


async def progress_writer(path: Path, session: StreamSession, interval: float = 1.0) -> None:
    """Append one JSONL record of the running figures every `interval` seconds until cancelled.

    The last record, written as the task is cancelled, has `"final": true`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with path.open("a", encoding="utf-8") as out:

        def write(**extra: Any) -> None:
            record = progress_record(session, time.monotonic() - started) | extra
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()

        try:
            ticks = 0
            while True:
                write()
                ticks += 1
                # Sleep to the next whole tick, so the lines stay `interval` apart however long writes take.
                await asyncio.sleep(max(0.0, started + ticks * interval - time.monotonic()))
        finally:
            write(final=True)
