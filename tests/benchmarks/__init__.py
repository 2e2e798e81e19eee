"""Benchmarks, run by hand (pytest does not collect them):

    python -m tests.benchmarks                       every benchmark, each in a process of its own
    python -m tests.benchmarks throughput fairness   some of them
    python -m tests.benchmarks.bench_throughput      one

Each prints the machine it ran on and a table whose ratios compare figures measured in the same
run. The loopback server runs in a subprocess (`ServerProcess`), unpaced unless a benchmark needs
pacing, so what is measured is the client.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from typing import Any

from tui.logs import quiet_environment

quiet_environment()  # before DSPy is imported: no network lookups at startup

import dspy  # noqa: E402
from dspy.streaming import StreamListener  # noqa: E402

from tui.config import Settings  # noqa: E402
from tui.streaming.session import StreamSession  # noqa: E402

MODEL = "openai/test-model"
API_KEY = "sk-bench-not-a-real-key"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    # The load average says whether other work shared the CPUs while this ran.
    load = " · load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    return (
        f"machine: nproc {os.cpu_count()} · {cpu_model()} · Python {platform.python_version()}"
        f" · dspy {dspy.__version__}{load}"
    )


def print_table(
    title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], notes: Sequence[str] = ()
) -> None:
    cells = [[str(c) for c in header]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    rule = "-" * (sum(widths) + 3 * (len(widths) - 1))
    print(f"\n{title}\n{machine()}\n{rule}")
    for index, row in enumerate(cells):
        print(
            " | ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0:
            print(rule)
    print(rule)
    for note in notes:
        print(note)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def raw_lm(base_url: str) -> dspy.LM:
    return dspy.LM(MODEL, api_base=base_url, api_key=API_KEY, cache=False, num_retries=0)


def raw_stream(program: dspy.Module, *, is_async_program: bool) -> Any:
    """streamify as DSPy's docs show it, with fresh listeners: a reused listener streams only once."""
    return dspy.streamify(
        program,
        stream_listeners=[StreamListener(signature_field_name="answer")],
        is_async_program=is_async_program,
    )


def bench_settings(base_url: str, **changes: Any) -> Settings:
    return Settings(model=MODEL, api_base=base_url, max_retries=0, timeout=120.0).replace(**changes)


def bench_session(base_url: str, **changes: Any) -> StreamSession:
    return StreamSession(bench_settings(base_url, **changes), lm=raw_lm(base_url), adapter=dspy.ChatAdapter())
