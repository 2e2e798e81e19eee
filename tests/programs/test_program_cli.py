"""`--program`, `--load`, `--tools` and `--input` as a user types them: a real process."""

from __future__ import annotations

import json
from pathlib import Path

import dspy
import pytest

from tests.support.openai_server import Behaviour
from tests.test_cli import assert_one_line_error, dspy_stream, on

SAMPLES = "tests/programs/sample_programs.py"


def test_help_says_pickle_runs_code():
    result = dspy_stream("--help")
    assert "--allow-pickle" in result.stdout and "pickle runs code" in " ".join(result.stdout.split())


@pytest.fixture
def bad_files(tmp_path: Path) -> Path:
    (tmp_path / "broken.py").write_text("import dspy\n\ndef oops(:\n    pass\n")
    (tmp_path / "raises.py").write_text("import dspy\nraise ImportError('no such thing as fooz')\n")
    (tmp_path / "wrong_state.json").write_text(json.dumps({"nothing": {"demos": []}}))
    (tmp_path / "not_json.json").write_text("{ not json")
    dspy.Predict("question -> answer").save(str(tmp_path / "lone_state.json"))
    (tmp_path / "saved").mkdir()
    return tmp_path


BAD_SPECS = [
    (["--program", "nowhere/x.py:Prog"], "nowhere/x.py: no such file"),
    (["--program", f"{SAMPLES}:Missing"], "has no 'Missing'"),
    (["--program", f"{SAMPLES}:not_a_program"], "is a int: expected a dspy.Module"),
    (["--program", f"{SAMPLES}:needs_arguments"], "needs arguments (size)"),
    (
        ["--program", f"{SAMPLES}:broken_factory"],
        "broken_factory() raised RuntimeError: the factory could not",
    ),
    (["--program", "{tmp}/broken.py:X"], "broken.py:3: syntax error"),
    (["--program", "{tmp}/raises.py:X"], "raises.py: line 2: ImportError: no such thing as fooz"),
    (["--program", "no_such_package.mod:X"], "no module named 'no_such_package.mod'"),
    (["--program", "bogus"], "unknown program 'bogus'"),
    (["--program", "nowhere/x.py"], "nowhere/x.py: no such file"),
    (["--program", SAMPLES], "defines several programs (typed_program, agent): name one"),
    (["--program", "examples/tools.py"], "examples/tools.py defines no program"),
    (["--program", "react"], "react needs tools"),
    (["--program", "cot", "--signature", "question -> -> answer"], "does not parse"),
    (["--program", "cot", "--signature", "question"], "does not parse"),
    (["--load", "{tmp}/nothing.json"], "state file"),
    (["--load", "{tmp}/wrong_state.json"], "saved from another program: it holds the predictors nothing"),
    (
        ["--program", "cot", "--load", "{tmp}/lone_state.json"],
        "it holds one predictor, this program has the predictors predict",
    ),
    (["--load", "{tmp}/not_json.json"], "does not fit the program"),
    (["--load", "{tmp}/saved"], "pass --allow-pickle"),
    (["--input", "nonsense"], "write NAME=VALUE"),
    (["--input", "question=@{tmp}/none.txt"], "no such file"),
    (["--input", "colour=red"], "the program's inputs are question"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_SPECS, ids=[" ".join(a) for a, _ in BAD_SPECS])
def test_every_bad_spec_is_one_line_and_exit_2(openai_server, bad_files, args, expected):
    args = [a.replace("{tmp}", str(bad_files)) for a in args]
    result = dspy_stream(*on(openai_server), *args, "What is Rust?")
    assert result.returncode == 2, result.stderr
    line = assert_one_line_error(result.stderr)
    assert expected in line
    assert not openai_server.completions  # found before anything runs


def test_two_inputs_from_flags_stream_each_field(openai_server, tmp_path):
    openai_server.default = Behaviour(tokens=4)
    notes = tmp_path / "notes.txt"
    notes.write_text("Rust is a systems language.")
    result = dspy_stream(
        *on(openai_server),
        "--program", "examples/research_answer.py:ResearchAnswer",
        "--input", f"notes=@{notes}", "--input", "question=What is Rust?",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("answer: ") and lines[1].startswith("title: ")
    assert lines[2].startswith("confidence: ")
    assert "[reasoning]" in result.stderr and "▸ draft" in result.stderr
    first_prompt = json.dumps(openai_server.completions[0].json)
    assert "Rust is a systems language." in first_prompt


def test_react_prints_its_tool_calls_in_order_on_stderr(openai_server):
    result = dspy_stream(
        *on(openai_server), "--program", "react", "--tools", "examples/tools.py", "Capital of France?"
    )
    assert result.returncode == 0, result.stderr
    calls = [line for line in result.stderr.splitlines() if line.startswith("→ ")]
    assert [c.split("(")[0] for c in calls] == ["→ capital_of", "→ calculate"]


def test_jsonl_maps_keys_to_inputs_and_a_missing_field_skips_only_its_line(openai_server, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        '{"notes": "n1", "question": "first?"}\n'
        '{"question": "no notes"}\n'
        '{"notes": "n3", "question": "third?"}\n'
    )
    result = dspy_stream(
        *on(openai_server),
        "--program",
        "examples/research_answer.py:make_program",
        "--questions",
        str(questions),
    )
    assert result.returncode == 0, result.stderr
    assert f"{questions}:2: missing input field 'notes'" in result.stderr
    assert result.stdout.count("Q") >= 2 and "first?" in result.stdout and "third?" in result.stdout


def test_saved_optimized_state_is_loaded_with_load(openai_server, tmp_path):
    program = dspy.ChainOfThought("question -> answer")
    program.predict.demos = [dspy.Example(question="Demo question?", reasoning="r", answer="Demo answer.")]
    program.predict.signature = program.predict.signature.with_instructions("Answer like a pirate.")
    state = tmp_path / "optimized.json"
    program.save(str(state))
    result = dspy_stream(*on(openai_server), "--program", "cot", "--load", str(state), "Why?")
    assert result.returncode == 0, result.stderr
    prompt = json.dumps(openai_server.completions[0].json)
    assert "Demo question?" in prompt and "Answer like a pirate." in prompt


def test_a_whole_saved_program_loads_only_with_allow_pickle(openai_server, tmp_path):
    program = dspy.Predict("question -> answer")
    program.demos = [dspy.Example(question="Pickled demo?", answer="Yes.")]
    saved = tmp_path / "whole"
    program.save(str(saved), save_program=True)
    result = dspy_stream(*on(openai_server), "--load", str(saved), "--allow-pickle", "Why?")
    assert result.returncode == 0, result.stderr
    assert "Pickled demo?" in json.dumps(openai_server.completions[0].json)


def test_program_settings_come_from_the_config_file_and_environment(openai_server, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('program = "cot"\nsignature = "topic -> title, summary"\n')
    result = dspy_stream(
        *on(openai_server), "--config", str(config), "rivers", env={"DSPY_STREAM_INSTRUCTIONS": "Be brief."}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("title: ")
    assert "Be brief." in json.dumps(openai_server.completions[0].json)


def test_a_factory_from_an_importable_module_streams(openai_server):
    openai_server.default = Behaviour(text="From the factory.")
    result = dspy_stream(*on(openai_server), "--program", "tests.programs.sample_programs:make_qa", "Why?")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "From the factory."
    assert "[reasoning]" in result.stderr  # make_qa is a chain of thought


def test_inputs_come_from_the_config_file_and_the_environment_too(openai_server, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("Notes from the config file.")
    config = tmp_path / "c.toml"
    config.write_text(
        'program = "examples/research_answer.py:ResearchAnswer"\n'
        f'inputs = {{ notes = "@{notes}", question = "from the file" }}\n'
    )
    result = dspy_stream(
        *on(openai_server),
        "--config",
        str(config),
        env={"DSPY_STREAM_INPUTS": '{"question": "from the env"}'},
    )
    assert result.returncode == 0, result.stderr
    prompt = json.dumps(openai_server.completions[0].json)
    assert "Notes from the config file." in prompt and "from the env" in prompt
    bad = dspy_stream(*on(openai_server), env={"DSPY_STREAM_INPUTS": "question=oops"})
    assert bad.returncode == 2
    assert "expected a JSON object" in assert_one_line_error(bad.stderr)


def test_a_file_that_defines_one_program_needs_no_name(openai_server, tmp_path):
    """`--program file.py`: its one instance, or else its one Module subclass; imports do not count."""
    openai_server.default = Behaviour(text="streamed from the file's program")
    only_class = tmp_path / "only_class.py"
    only_class.write_text(
        "import dspy\nfrom dspy import ChainOfThought  # imported: not the file's own\n\n"
        "class Mine(dspy.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.step = dspy.Predict('question -> answer')\n\n"
        "    def forward(self, question):\n        return self.step(question=question)\n"
    )
    instance = tmp_path / "instance.py"
    instance.write_text(only_class.read_text() + "\nprogram = Mine()\n")
    for path in (only_class, instance):
        result = dspy_stream(*on(openai_server), "--program", str(path), "What is Rust?")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "streamed from the file's program"


PRINTING_PROGRAM = """
import sys
import threading

import dspy

print("loading the program")


def look_up(question: str) -> None:
    print(f"looking up {question}", end="")
    print(" in the notes")


class Printing(dspy.Module):
    def __init__(self):
        super().__init__()
        self.step = dspy.Predict("question -> answer")

    def forward(self, question):
        if question == "threaded?":
            thread = threading.Thread(target=look_up, args=(question,))
            thread.start()
            thread.join()
        print(f"asked {question}", file=sys.stderr)
        for percent in (10, 50, 100):
            print(f"\\rprogress {percent}%", end="")
        print()
        return self.step(question=question)
"""


def test_what_the_program_prints_goes_to_stderr_under_its_stream_not_into_answers(openai_server, tmp_path):
    """In a worker, a line the program prints (in forward; in a plain thread while its stream
    alone runs) is its stream's: tagged on stderr, a `status` record of kind `output` in JSONL.
    stdout keeps only the answers; what it prints at import goes to the log."""
    openai_server.default = Behaviour(text="the answer")
    program = tmp_path / "printing.py"
    program.write_text(PRINTING_PROGRAM)
    questions = ["Rust?", "Go?", "Zig?", "Nim?"]
    result = dspy_stream(*on(openai_server), "--workers", "2", "--program", str(program), *questions)
    assert result.returncode == 0, result.stderr
    for number, question in enumerate(questions, 1):
        printed = [
            line
            for line in result.stderr.splitlines()
            if line.startswith(f"[{number}] ") and ("asked" in line or "progress" in line)
        ]
        assert printed == [f"[{number}] asked {question}", f"[{number}] progress 100%"], result.stderr
    assert result.stdout.count("the answer") == len(questions)
    assert "asked" not in result.stdout and "progress" not in result.stdout
    assert "loading the program" not in result.stdout + result.stderr

    one = dspy_stream(*on(openai_server), "--jsonl", "--program", str(program), "threaded?")
    assert one.returncode == 0, one.stderr
    records = [json.loads(line) for line in one.stdout.splitlines()]
    printed = [r["text"] for r in records if r["event"] == "status" and r["kind"] == "output"]
    assert printed == ["looking up threaded? in the notes", "asked threaded?", "progress 100%"]


MISBEHAVING_PROGRAM = """
import sys

import dspy


class Misbehaving(dspy.Module):
    def __init__(self):
        super().__init__()
        self.step = dspy.Predict("question -> answer")

    def forward(self, question):
        if question == "bad":
            {misbehaviour}
        return self.step(question=question)
"""


@pytest.mark.parametrize(
    ("misbehaviour", "error"),
    [
        ("sys.exit(3)", "the program called sys.exit(3)"),
        ("raise KeyboardInterrupt", "the program raised KeyboardInterrupt"),
        ("raise GeneratorExit", "the program raised GeneratorExit"),
        ("return None", "the program returned None, not a Prediction"),
    ],
)
def test_a_program_that_exits_or_returns_nothing_fails_only_its_own_stream(
    openai_server, tmp_path, misbehaviour, error
):
    """The three streams share one worker: before, sys.exit() in one ended the worker's event
    loop and every stream of it was 'cancelled', exit code 0."""
    openai_server.default = Behaviour(text="the answer", token_delay=0.02)
    program = tmp_path / "misbehaving.py"
    program.write_text(MISBEHAVING_PROGRAM.format(misbehaviour=misbehaviour))
    args = ["--workers", "1", "--jsonl", "--program", str(program), "good one", "bad", "good two"]
    result = dspy_stream(*on(openai_server), *args)
    assert result.returncode == 1, result.stderr
    ends = {
        r["stream"]: r
        for r in map(json.loads, result.stdout.splitlines())
        if r["event"] in ("done", "failed", "cancelled")
    }
    assert [ends[n]["event"] for n in (1, 2, 3)] == ["done", "failed", "done"], ends
    assert ends[2]["error"] == error
    assert "Traceback" not in result.stderr


FAN_OUT_PROGRAM = """
from concurrent.futures import ThreadPoolExecutor

import dspy


class FanOut(dspy.Module):
    def __init__(self):
        super().__init__()
        self.draft = dspy.Predict("question -> draft")
        self.combine = dspy.Predict("question, drafts -> answer")

    def forward(self, question):
        asks = [{"question": question}, {"question": question + " (again)"}]
        if "{how}" == "parallel":
            drafts = dspy.Parallel(num_threads=2)([(self.draft, ask) for ask in asks])
        else:
            with ThreadPoolExecutor(2) as pool:
                drafts = list(pool.map(lambda ask: self.draft(**ask), asks))
        return self.combine(question=question, drafts=" / ".join(d.draft for d in drafts))
"""


@pytest.mark.parametrize("how", ["parallel", "thread pool"])
def test_a_program_that_fans_out_over_threads_runs_and_streams_its_answer(openai_server, tmp_path, how):
    """dspy.Parallel's threads could not reach the stream (dspy#9154) and a ThreadPoolExecutor's
    had no LM at all: both failed. Their calls now run unstreamed; the program's own streams."""
    openai_server.default = Behaviour(fields={"draft": "a draft", "answer": "the combined answer"})
    program = tmp_path / "fan_out.py"
    program.write_text(FAN_OUT_PROGRAM.replace("{how}", how))
    result = dspy_stream(*on(openai_server), "--jsonl", "--program", str(program), "Why stream?")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    answer = "".join(r["text"] for r in records if r["event"] == "token" and r["field"].endswith("answer"))
    assert answer == "the combined answer"
    assert len([r for r in records if r["event"] == "token"]) > 1, "the answer streamed"
    assert len(openai_server.completions) == 3


def test_a_program_printing_thousands_of_lines_keeps_every_line_in_order(openai_server, tmp_path):
    """More lines than a stream holds pending (PrintedLines.LIMIT): the printing thread waits
    for the consumer, as on a slow terminal, and nothing is lost or reordered."""
    openai_server.default = Behaviour(text="the answer")
    program = tmp_path / "chatty.py"
    program.write_text(
        "import dspy\n\nclass Chatty(dspy.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.step = dspy.Predict('question -> answer')\n\n    def forward(self, question):\n"
        "        for i in range(3000):\n            print(f'{question} line {i}')\n"
        "        return self.step(question=question)\n"
    )
    result = dspy_stream(*on(openai_server), "--program", str(program), "a", "b")
    assert result.returncode == 0, result.stderr[-2000:]
    for number, question in enumerate(["a", "b"], 1):
        printed = [
            line for line in result.stderr.splitlines() if line.startswith(f"[{number}] {question} line")
        ]
        assert printed == [f"[{number}] {question} line {i}" for i in range(3000)]
    assert result.stdout.count("the answer") == 2


def test_the_readme_example_program_runs_on_the_embedded_model_as_written():
    """What a new user without a key pastes first fits the embedded model's context (the README
    itself as notes did not: 12,646 tokens of 4,096). Whether a 135M model writes a float the
    second stage can parse is the model's affair; both stages run."""
    result = dspy_stream(
        "--headless", "--temperature", "0",
        "--program", "examples/research_answer.py:ResearchAnswer",
        "--input", "notes=@examples/notes.md", "--input", "question=What does dspy-stream measure?",
        timeout=240,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-2000:]
    assert "✓ draft" in result.stderr and "✓ headline" in result.stderr, result.stderr[-2000:]
    assert "tokens, more than the" not in result.stderr
