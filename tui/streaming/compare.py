"""The compare table: a row per variant, its figures as they stand, the best of each column known.

Read live from each stream's figures (TTFT and TTFO of every stream that has its first token,
not only the ended ones), so the table fills in as the answers stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tui.streaming.metrics import Distribution, StreamMetrics


@dataclass(frozen=True)
class CompareColumn:
    key: str
    label: str
    better: str | None  # "low", "high", or None: no best (a count, not a merit)
    unit: str = ""  # "s" latencies, "tok/s", "usd", "req/s"; "" a count


COMPARE_COLUMNS = (
    CompareColumn("done", "done", "high"),
    CompareColumn("failed", "failed", "low"),
    CompareColumn("ttft_p50", "TTFT p50", "low", "s"),
    CompareColumn("ttft_p90", "TTFT p90", "low", "s"),
    CompareColumn("ttfo_p50", "TTFO p50", "low", "s"),
    CompareColumn("tokens_per_s", "tok/s", "high", "tok/s"),
    CompareColumn("tokens", "tokens", None),
    CompareColumn("cost", "cost", "low", "usd"),
    CompareColumn("retries", "retries", "low"),
    CompareColumn("goodput", "goodput", "high", "req/s"),
)


def _meets(m: StreamMetrics, slo_ms: Mapping[str, float]) -> bool:
    """vLLM's goodput rule, on live figures: a done stream within every target."""
    if m.state != "done":
        return False
    seconds = {"ttft": m.ttft, "tpot": m.tpot or 0.0, "e2el": m.e2e}
    return all(seconds[name] is not None and seconds[name] * 1000 <= ms for name, ms in slo_ms.items())


def variant_figures(
    metrics: Sequence[StreamMetrics], *, duration: float, slo_ms: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """One variant's row: its streams' figures so far (None: not measured yet)."""
    ttft = Distribution.of(m.ttft for m in metrics).as_dict()
    costs = [m.cost_usd for m in metrics if m.cost_usd is not None]
    rates = Distribution.of(m.tokens_per_s for m in metrics).as_dict()
    row: dict[str, Any] = {
        "streams": len(metrics),
        "live": sum(m.ended_at is None for m in metrics),
        "done": sum(m.state == "done" for m in metrics),
        "failed": sum(m.state == "failed" for m in metrics),
        "ttft_p50": ttft.get("p50"),
        "ttft_p90": ttft.get("p90"),
        "ttfo_p50": Distribution.of(m.ttfo for m in metrics).as_dict().get("p50"),
        "tokens_per_s": rates.get("median"),
        "tokens": sum(m.tokens for m in metrics),
        "cost": sum(costs) if costs else None,
        "retries": sum(max(m.attempts - 1, 0) for m in metrics),
        "goodput": None,
    }
    if slo_ms and duration > 0:
        row["goodput"] = sum(_meets(m, slo_ms) for m in metrics) / duration
    return row


def compare_table(
    metrics_by_variant: Mapping[str, Sequence[StreamMetrics]],
    *,
    duration: float,
    slo_ms: Mapping[str, float] | None = None,
) -> dict[str, dict[str, Any]]:
    return {
        label: variant_figures(metrics, duration=duration, slo_ms=slo_ms)
        for label, metrics in metrics_by_variant.items()
    }


def best_of_columns(rows: Mapping[str, Mapping[str, Any]]) -> dict[str, set[str]]:
    """For each column with a best: the variants that hold it. None where all are alike, or
    where fewer than two variants have a value (nothing to beat)."""
    best: dict[str, set[str]] = {}
    for column in COMPARE_COLUMNS:
        if column.better is None:
            continue
        # Compared as shown, to three significant digits: 30.01 tok/s does not beat 30.00.
        values = {label: row.get(column.key) for label, row in rows.items()}
        known = {label: float(f"{value:.3g}") for label, value in values.items() if value is not None}
        if len(known) < 2 or len(set(known.values())) < 2:
            continue
        target = min(known.values()) if column.better == "low" else max(known.values())
        best[column.key] = {label for label, value in known.items() if value == target}
    return best
