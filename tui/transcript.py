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
from tui.report import (
    StreamFigures,
    parse_slo,
    per_variant_figures,
    prediction_json,
    stream_figures,
    summary_figures,
)
from tui.streaming.figures import DASH
from tui.streaming.safe_text import hide_secrets
from tui.streaming.session_base import LiveStream as StreamRun
from tui.streaming.session_base import SessionBase as StreamSession
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


# What a stream's figures hold that the transcript shows elsewhere (its texts, the Prediction).
_SHOWN_APART = ("question", "generated_text", "inputs", "field_texts", "prediction", "tool_calls", "variant")


def stream_dict(run: StreamRun, started_at: float | None) -> dict[str, Any]:
    record = run.record
    figures = StreamFigures.of(run, started_at).as_dict()
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
        "figures": {name: value for name, value in figures.items() if name not in _SHOWN_APART},
    }


def session_dict(session: StreamSession, settings: Settings, saved_at: datetime) -> dict[str, Any]:
    streams = stream_figures(session)
    slo = parse_slo(settings.slo) if settings.slo else None
    return _clean(
        {
            "tool": "dspy-stream",
            "version": __version__,
            "saved_at": saved_at.isoformat(timespec="seconds"),
            "settings": settings.public_dict(),
            # The report's figures, by the report's names (vLLM's), for the run and each variant.
            "summary": summary_figures(streams, session.summary().duration, slo),
            "variants": per_variant_figures(session, streams, slo),
            "streams": [stream_dict(run, session.started_at) for run in session.runs],
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
    out += ["", "## Summary", "", *_figures_table(data["summary"])]
    for label, figures in (data.get("variants") or {}).items():
        out += ["", f"## Summary · {label}", "", *_figures_table(figures)]
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
        out += ["**Figures**", "", *_figures_table(stream["figures"])]
    return sanitize("\n".join(out)) + "\n"


def _figures_table(figures: dict[str, Any]) -> list[str]:
    """A Markdown table of the scalar figures (lists and maps, such as each gap, stay in the JSON)."""
    rows = [f"| {k} | {_figure(v)} |" for k, v in figures.items() if not isinstance(v, list | dict)]
    return ["| figure | value |", "|---|---|", *rows]


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
