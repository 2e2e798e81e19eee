"""Variants: the same questions through several models and programs at once, each on its own.

Real headless processes against the loopback server; the labels and the compare table's best
marks as plain functions.
"""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys

import pytest

from tests.support.openai_server import Behaviour
from tests.test_cli import ROOT, assert_one_line_error
from tests.test_robustness import _env
from tui.config import ConfigError, Settings
from tui.streaming.compare import best_of_columns, compare_table
from tui.streaming.metrics import StreamMetrics
from tui.streaming.variants import ProgramChoice, program_choices, variant_labels, variant_settings

PACED = "tokens=40:tokens_per_s=40"


def _run(server, tmp_path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "tui", "--headless", "--api-base", server.base_url, *args]
    return subprocess.run(argv, env=_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_a_429_storm_on_one_variant_leaves_the_others_at_full_speed(openai_server, tmp_path):
    report = tmp_path / "r.json"
    questions = ["What is Rust?", "What is Go?", "What is Zig?"]
    done = _run(
        openai_server, tmp_path,
        "--model", f"openai/{PACED}:id=a", "--model", f"openai/{PACED}:id=b", "--model", "openai/fault:429",
        "--max-retries", "3", "--retry-delay", "0.01", "--concurrency", "3", "--report", str(report),
        *questions,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # the storm's streams failed
    assert "Traceback" not in done.stderr
    data = json.loads(report.read_text())
    labels = [f"{PACED}:id=a", f"{PACED}:id=b", "fault:429"]
    assert data["variants"] == labels
    assert sorted(data["variant"]) == sorted(labels * 3)
    by_variant = {label: [i for i, v in enumerate(data["variant"]) if v == label] for label in labels}
    for label in labels[:2]:
        rows = by_variant[label]
        assert [data["states"][i] for i in rows] == ["done"] * 3
        assert all(data["attempts"][i] == 1 for i in rows)
        rates = [data["output_tokens_per_s"][i] for i in rows]
        # Each stream is paced at 40 tok/s by the server: the storm next to it takes none of it.
        assert statistics.median(rates) >= 0.8 * 40, rates
        block = data["per_variant"][label]
        assert block["completed"] == 3 and block["failed"] == 0 and block["total_retries"] == 0
        assert block["model_id"] == f"openai/{label}"
    storm = data["per_variant"]["fault:429"]
    assert storm["failed"] == 3 and storm["total_retries"] == 9
    assert all("429" in data["errors"][i] for i in by_variant["fault:429"])
    # Each question on every variant, tagged with both, and a summary line per variant.
    for n, question in enumerate(questions, 1):
        for label in labels:
            assert f"[Q{n} · {label}] Q: {question}" in done.stdout
    for label in labels:
        assert f"  {label}: 3 streams:" in done.stderr


def test_variants_of_program_and_saved_state_are_labelled_and_reported(openai_server, tmp_path):
    openai_server.reset(Behaviour(tokens=5))
    import dspy

    program = dspy.Predict("question -> answer")
    program.signature = program.signature.with_instructions("Answer like a pirate.")
    state = tmp_path / "v2.json"
    program.save(str(state))
    report = tmp_path / "r.csv"
    done = _run(
        openai_server, tmp_path, "--model", "openai/test-model",
        "--program", "predict", "--program", "predict", "--load", str(state), "--program", "cot",
        "--report", str(report), "Why?",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    labels = ["predict · as written", "predict · v2.json", "cot · as written"]
    rows = list(csv.DictReader(report.open()))
    assert [row["variant"] for row in rows] == labels
    summary = dict(csv.reader(report.with_suffix(".summary.csv").open()))
    assert summary["variant.predict · v2.json.completed"] == "1"
    for label in labels:
        assert f"[Q1 · {label}]" in done.stdout
    # The state loads into its own variant only.
    prompts = [json.dumps(request.json) for request in openai_server.completions]
    assert sum("Answer like a pirate." in prompt for prompt in prompts) == 1


def test_a_recorded_compare_run_replays_with_its_variants(openai_server, tmp_path):
    openai_server.reset(Behaviour(tokens=8, tokens_per_s=80))
    trace, original, replayed = tmp_path / "run.trace", tmp_path / "a.json", tmp_path / "b.json"
    models = ["--model", "openai/alpha", "--model", "openai/fault:503:times=1", "--max-retries", "1"]
    done = _run(
        openai_server, tmp_path, *models, "--record", str(trace), "--report", str(original), "one", "two"
    )
    assert done.returncode == 0, done.stderr
    replay = subprocess.run(
        [sys.executable, "-m", "tui", "replay", str(trace), "--speed", "max", "--headless",
         "--report", str(replayed)],
        env=_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    a, b = json.loads(original.read_text()), json.loads(replayed.read_text())
    assert b["variants"] == a["variants"] == ["alpha", "fault:503:times=1"]
    assert sorted(zip(b["stream_ids"], b["variant"], strict=True)) == sorted(
        zip(a["stream_ids"], a["variant"], strict=True)
    )
    for label in a["variants"]:
        assert b["per_variant"][label]["completed"] == a["per_variant"][label]["completed"] == 2
        assert b["per_variant"][label]["total_retries"] == a["per_variant"][label]["total_retries"]
        assert b["per_variant"][label]["model_id"] == a["per_variant"][label]["model_id"]
    assert a["per_variant"]["fault:503:times=1"]["total_retries"] == 1
    assert "[Q2 · alpha]" in replay.stdout


def test_history_shows_and_compares_runs_by_variant(openai_server, tmp_path):
    openai_server.reset(Behaviour(tokens=5))
    models = ["--model", "openai/alpha", "--model", "openai/beta"]
    for _ in range(2):
        assert _run(openai_server, tmp_path, *models, "one", "two").returncode == 0
    show = subprocess.run(
        [sys.executable, "-m", "tui", "history", "show", "1"], env=_env(tmp_path), cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert show.returncode == 0, show.stderr
    by_variant = show.stdout.split("figures by variant", 1)[1]
    assert by_variant.splitlines()[1].split() == ["figure", "alpha", "beta"]
    assert "[1 · alpha]" in show.stdout and "[4 · beta]" in show.stdout
    compare = subprocess.run(
        [sys.executable, "-m", "tui", "history", "compare", "1", "2"], env=_env(tmp_path), cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert compare.returncode == 0, compare.stderr
    assert "variant alpha" in compare.stdout and "variant beta" in compare.stdout


def test_jsonl_records_name_the_question_and_the_variant(openai_server, tmp_path):
    openai_server.reset(Behaviour(tokens=3))
    models = ["--model", "openai/alpha", "--model", "openai/beta"]
    done = _run(openai_server, tmp_path, "--jsonl", *models, "one")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    ends = {(r["question_no"], r["variant"]) for r in records if r["event"] == "done"}
    assert ends == {(1, "alpha"), (1, "beta")}


def test_variants_whose_programs_take_different_inputs_are_refused_in_one_line(openai_server, tmp_path):
    done = _run(
        openai_server, tmp_path, "--model", "openai/test-model", "--program", "predict",
        "--program", "tests/programs/sample_programs.py:DraftThenPolish", "Why?",
    )  # fmt: skip
    assert done.returncode == 2
    assert "different inputs" in assert_one_line_error(done.stderr)


def test_a_variant_given_twice_is_refused_in_one_line(openai_server, tmp_path):
    done = _run(openai_server, tmp_path, "--model", "openai/a", "--model", "openai/a", "Why?")
    assert done.returncode == 2
    assert "given twice" in assert_one_line_error(done.stderr)


# -- labels and choices ---------------------------------------------------------------------------


def test_each_load_belongs_to_the_program_before_it():
    order = [("load", "base.json"), ("program", "qa.py:QA"), ("load", "v1.json"), ("load", "v2.json")]
    order += [("program", "cot")]
    assert program_choices(order) == [
        ProgramChoice(None, "base.json"), ProgramChoice("qa.py:QA", "v1.json"),
        ProgramChoice("qa.py:QA", "v2.json"), ProgramChoice("cot"),
    ]  # fmt: skip


def test_with_one_program_every_load_is_its_own_wherever_it_stands():
    order = [("load", "v1.json"), ("program", "cot"), ("load", "v2.json")]
    assert program_choices(order) == [ProgramChoice("cot", "v1.json"), ProgramChoice("cot", "v2.json")]
    assert program_choices([("load", "v1.json"), ("program", "cot")]) == [ProgramChoice("cot", "v1.json")]


def test_labels_name_only_what_differs_and_never_collide():
    base = Settings()
    models = ["openai/gpt-4o-mini", "local"]
    both = variant_settings(base, models, [ProgramChoice("predict"), ProgramChoice("cot")])
    assert variant_labels(both) == [
        "gpt-4o-mini · predict",
        "gpt-4o-mini · cot",
        "local · predict",
        "local · cot",
    ]
    loads = variant_settings(
        base,
        [],
        [ProgramChoice("examples/qa.py:QA", "v1.json"), ProgramChoice("examples/qa.py:QA", "out/v2.json")],
    )
    assert variant_labels(loads) == ["qa.py:QA · v1.json", "qa.py:QA · v2.json"]
    clash = variant_settings(base, ["openai/gpt-4o", "azure/gpt-4o"], [])
    assert variant_labels(clash) == ["openai/gpt-4o · predict", "azure/gpt-4o · predict"]
    with pytest.raises(ConfigError, match="given twice"):
        variant_settings(base, ["openai/a", "openai/a"], [])


def _metrics(
    ttft: float | None, rate: float = 0.0, *, state: str = "done", attempts: int = 1
) -> StreamMetrics:
    m = StreamMetrics(clock=lambda: 100.0)
    m.started_at, m.state, m.attempts = 0.0, state, attempts
    if ttft is None:  # failed before its first token
        m.ended_at = 1.0
        return m
    m.first_token_at, m.tokens = ttft, 11
    m.last_token_at = ttft + 10 / rate
    m.ended_at = m.last_token_at
    return m


def test_the_best_of_each_column_is_marked_and_ties_as_shown_are_not():
    rows = compare_table(
        {
            "fast": [_metrics(0.1, 50.0), _metrics(0.2, 50.0)],
            "slow": [_metrics(0.5, 50.001), _metrics(0.6, 49.999, attempts=3)],
            "down": [_metrics(None, state="failed")],
        },
        duration=10.0,
        slo_ms={"ttft": 300},
    )
    best = best_of_columns(rows)
    assert rows["down"]["ttft_p50"] is None and best["ttft_p50"] == {"fast"}
    assert best["done"] == {"fast", "slow"} and best["failed"] == {"fast", "slow"}
    assert best["retries"] == {"fast", "down"}
    assert best["goodput"] == {"fast"}
    assert "tokens" not in best  # a count, not a merit
    assert "tokens_per_s" not in best  # 50.0 and 50.0 as shown: alike, so no best
