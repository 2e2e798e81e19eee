"""How figures read on screen: short, fixed units, a dash for "not known yet"."""

from __future__ import annotations

import math

DASH = "\u2013"  # an en dash
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SPINNER_FPS = 12


def spinner(now: float) -> str:
    """The spinner frame at `now`: driven by the clock, so a frozen clock freezes it."""
    return SPINNER[int(now * SPINNER_FPS) % len(SPINNER)]


def seconds(value: float | None) -> str:
    if value is None or math.isnan(value):
        return DASH
    if value < 10:
        return f"{value:.2f}s"
    if value < 600:
        return f"{value:.1f}s"
    minutes, rest = divmod(int(value), 60)
    return f"{minutes}:{rest:02d}"


def millis(value: float | None) -> str:
    if value is None or math.isnan(value):
        return DASH
    return f"{value * 1000:,.0f} ms" if value >= 0.01 else f"{value * 1000:.1f} ms"


def rate(value: float | None, unit: str = "tok/s") -> str:
    if value is None or math.isnan(value):
        return f"{DASH} {unit}"
    return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def clock_time(value: float | None) -> str:
    """An ETA or a duration as m:ss."""
    if value is None or math.isnan(value) or value < 0:
        return DASH
    minutes, rest = divmod(round(value), 60)
    return f"{minutes}:{rest:02d}"


def count(number: int, noun: str) -> str:
    """ "1 token", "2 tokens", "1,024 tokens"."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def usd(value: float) -> str:
    """A cost in US dollars: four decimals, two significant digits below a hundredth of a cent."""
    return f"${value:.4f}" if value >= 0.0001 or value == 0 else f"${value:.2g}"
