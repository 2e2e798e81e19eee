"""Save a session as Markdown or JSON: questions, answers, partial answers per attempt, metrics, settings.

Never keys: settings hold none (keys come from the environment), and every string is passed
through the core's `hide_secrets`, which hides anything shaped like a key or bearer token.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from tui import __version__
from tui.config import Settings
from tui.report import prediction_json
from tui.streaming.metrics import RunSummary
from tui.streaming.safe_text import hide_secrets
from tui.streaming.session_base import LiveStream as StreamRun
from tui.streaming.session_base import SessionBase as StreamSession
from tui.widgets.figures import DASH
from tui.widgets.sanitize import sanitize


def default_path(now: datetime | None = None, suffix: str = ".md") -> Path:
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path(f"dspy-stream-{stamp}{suffix}")


def _clean(value: Any) -> Any:
    """JSON-safe and key-free: NaN becomes null, keys in strings are hidden (text kept as is)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str):
        return hide_secrets(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def summary_dict(summary: RunSummary) -> dict[str, Any]:
    return {
        "streams": summary.streams,
        "completed": summary.completed,
        "failed": summary.failed,
        "cancelled": summary.cancelled,
        "retries": summary.retries,
        "error_rate": summary.error_rate,
        "total_tokens": summary.total_tokens,
        "duration_s": summary.duration,
        "request_throughput_per_s": summary.request_throughput,
        "output_throughput_tokens_per_s": summary.output_throughput,
        "ttft_ms": summary.ttft.as_dict(1000),
        "tpot_ms": summary.tpot.as_dict(1000),
        "itl_ms": summary.itl.as_dict(1000),
        "e2el_ms": summary.e2el.as_dict(1000),
        "ttfo_ms": summary.ttfo.as_dict(1000),
        "total_input_tokens": summary.total_input_tokens,
        "total_provider_output_tokens": summary.total_provider_output_tokens,
        "total_cost_usd": summary.total_cost_usd,
    }


def stream_dict(run: StreamRun) -> dict[str, Any]:
    record = run.record
    return {
        "stream": run.job.stream_id,
        "variant": run.job.variant,
        "question_no": run.job.question_no,
        "question": record.question,
        "state": run.metrics.state,
        "truncated": run.metrics.truncated,
        "answer": record.field_text(run.info.final_output.key),
        "inputs": dict(run.job.program_inputs),
        "fields": dict(record.current),
        "prediction": prediction_json(record.prediction),
        "tool_calls": list(run.tool_calls),
        "error": record.error,
        "attempts": [
            {"attempt": attempt.number, "text": dict(attempt.text), "error": attempt.error}
            for attempt in record.attempts
        ],
        "metrics": run.metrics.as_dict(),
    }


def session_dict(session: StreamSession, settings: Settings, saved_at: datetime) -> dict[str, Any]:
    return _clean(
        {
            "tool": "dspy-stream",
            "version": __version__,
            "saved_at": saved_at.isoformat(timespec="seconds"),
            "settings": settings.public_dict(),
            "summary": summary_dict(session.summary()),
            "variants": {
                label: summary_dict(summary) for label, summary in session.variant_summaries().items()
            },
            "streams": [stream_dict(run) for run in session.runs],
        }
    )


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.split("\n"))


def _figure(value: Any) -> str:
    """A table cell: short numbers, no pipe or newline to break the row."""
    if value is None:
        return DASH
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _spread(figures: dict[str, float]) -> str:
    return (
        " · ".join(f"{key} {figures[key]:.1f}" for key in ("mean", "median", "p99") if key in figures) or DASH
    )


def session_markdown(data: dict[str, Any]) -> str:
    out = [
        "# dspy-stream session",
        "",
        f"Saved {data['saved_at']} by dspy-stream {data['version']}.",
        "",
        "## Settings",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    out += [f"| {name} | `{_figure(value)}` |" for name, value in data["settings"].items()]
    out += ["", "## Summary", "", "| figure | value |", "|---|---|"]
    for name, value in data["summary"].items():
        if isinstance(value, dict):
            value = _spread(value)
        out.append(f"| {name} | {_figure(value)} |")
    for label, figures in (data.get("variants") or {}).items():
        out += ["", f"## Summary · {label}", "", "| figure | value |", "|---|---|"]
        for name, value in figures.items():
            out.append(f"| {name} | {_figure(_spread(value) if isinstance(value, dict) else value)} |")
    for stream in data["streams"]:
        state = stream["state"] + (", truncated at the token limit" if stream.get("truncated") else "")
        named = f"Stream {stream['stream']}"
        if stream.get("variant"):
            named += f" · Q{stream.get('question_no')} · {stream['variant']}"
        out += ["", f"## {named}: {state}", "", "**Question**", ""]
        out += [_quote(stream["question"]), ""]
        inputs = stream.get("inputs") or {}
        if len(inputs) > 1:
            for name, value in inputs.items():
                out += [f"**{name}**", "", _quote(value), ""]
        fields = stream["fields"]
        answer_key = next((k for k, v in fields.items() if v == stream["answer"]), None)
        for name, text in fields.items():
            if name != answer_key and text:
                out += [f"**{name.capitalize() if name == 'reasoning' else name}**", "", text, ""]
        for call in stream.get("tool_calls") or []:
            out += [f"- tool call: `{call}`"]
        label = "Answer" if stream["state"] == "done" else "Partial answer"
        out += [f"**{label}**", "", stream["answer"] or "_(nothing arrived)_", ""]
        prediction = stream.get("prediction") or {}
        if prediction:
            out += [
                "**Prediction**",
                "",
                "```json",
                json.dumps(prediction, indent=2, ensure_ascii=False),
                "```",
                "",
            ]
        if stream["error"]:
            out += [f"**Error:** {stream['error']}", ""]
        if len(stream["attempts"]) > 1:
            out += ["**Attempts**", ""]
            for attempt in stream["attempts"]:
                ending = f"failed: {attempt['error']}" if attempt["error"] else "delivered"
                out += [f"Attempt {attempt['attempt']} ({ending}):", ""]
                out += [_quote("\n\n".join(t for t in attempt["text"].values() if t) or "(no text)"), ""]
        metrics = stream["metrics"]
        out += ["**Metrics**", "", "| figure | value |", "|---|---|"]
        out += [f"| {k} | {_figure(v)} |" for k, v in metrics.items() if not isinstance(v, dict)]
    return sanitize("\n".join(out)) + "\n"


def save_session(
    path: Path, session: StreamSession, settings: Settings, saved_at: datetime | None = None
) -> Path:
    """Write the session to `path`: JSON when it ends in .json, Markdown otherwise."""
    data = session_dict(session, settings, saved_at or datetime.now().astimezone())
    if path.suffix.lower() == ".json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        text = session_markdown(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
