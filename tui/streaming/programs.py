"""The DSPy programs a question can run through, by the names the CLI uses."""

from __future__ import annotations

import dspy

SIGNATURE = "question -> answer"
PROGRAM_FIELDS = {"predict": ("answer",), "cot": ("reasoning", "answer")}


def build_program(name: str) -> dspy.Module:
    """A fresh program: `predict` answers directly, `cot` reasons step by step first."""
    if name == "predict":
        return dspy.Predict(SIGNATURE)
    if name == "cot":
        return dspy.ChainOfThought(SIGNATURE)
    raise ValueError(f"unknown program {name!r}: choose predict or cot")


def output_fields(name: str) -> tuple[str, ...]:
    """The fields a program streams, in the order they arrive."""
    return PROGRAM_FIELDS[name]


def program_output_fields(program: dspy.Module) -> list[str]:
    """Output fields of every predictor in `program`, in signature order."""
    names: list[str] = []
    for _, predictor in program.named_predictors():
        names.extend(n for n in predictor.signature.output_fields if n not in names)
    return names
