"""What a loaded DSPy program asks for and answers, read from its predictors and `forward`."""

from __future__ import annotations

import inspect
import typing
from collections import Counter
from typing import Any

import dspy
from dspy.adapters.types.base_type import Type as DspyType

from tui.streaming.program_info import OutputField, ProgramInfo

REASONING_NAMES = ("reasoning", "rationale", "next_thought")  # ReAct's thoughts read as reasoning


def field_keys(program: dspy.Module) -> dict[tuple[str, str], str]:
    """(predictor name, field name) -> the key tokens carry: the field name, or `predictor.field`
    where the same field name occurs in more than one predictor."""
    predictors = program.named_predictors()
    counts = Counter(name for _, p in predictors for name in p.signature.output_fields)
    return {
        (pname, fname): (f"{display_name(pname)}.{fname}" if counts[fname] > 1 else fname)
        for pname, p in predictors
        for fname in p.signature.output_fields
    }


def display_name(predictor_name: str) -> str:
    """`draft.predict` (a ChainOfThought's inner Predict) reads as `draft`; a lone Predict as `predict`."""
    if predictor_name == "self":
        return "predict"
    if predictor_name.endswith(".predict"):
        return predictor_name[: -len(".predict")]
    return predictor_name


def streams(annotation: Any) -> bool:
    """Text streams token by token; numbers, lists, Literal and models appear with the Prediction."""
    if annotation is str:
        return True
    if inspect.isclass(annotation) and issubclass(annotation, DspyType):
        try:
            return bool(annotation.is_streamable())
        except Exception:
            return False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and streams(args[0])
    return False


def type_name(annotation: Any) -> str:
    if inspect.isclass(annotation) and typing.get_origin(annotation) is None:
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def is_reasoning(name: str, annotation: Any) -> bool:
    if name in REASONING_NAMES:
        return True
    reasoning_type = getattr(dspy, "Reasoning", None)
    return (
        reasoning_type is not None and inspect.isclass(annotation) and issubclass(annotation, reasoning_type)
    )


def program_inputs(program: dspy.Module) -> tuple[str, ...]:
    """Its input fields: `forward` (or `aforward`) parameters, else its first predictor's inputs."""
    for method_name in ("forward", "aforward"):
        method = getattr(type(program), method_name, None)
        if method is None or method is getattr(dspy.Module, method_name, None):
            continue
        try:
            parameters = list(inspect.signature(method).parameters.values())[1:]
        except (TypeError, ValueError):
            continue
        names = tuple(
            p.name
            for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY)
        )
        if names:
            return names
    own = getattr(program, "signature", None)  # ReAct's and Predict's: the user's, without internals
    if inspect.isclass(own) and issubclass(own, dspy.Signature) and own.input_fields:
        return tuple(own.input_fields)
    for _, predictor in program.named_predictors():
        inputs = tuple(predictor.signature.input_fields)
        if inputs:
            return inputs
    return ("question",)


def program_info(program: dspy.Module, label: str) -> ProgramInfo:
    keys = field_keys(program)
    outputs = []
    instructions = ""
    for pname, predictor in program.named_predictors():
        signature = predictor.signature
        if not instructions:
            instructions = (signature.instructions or "").strip()
        for fname, info in signature.output_fields.items():
            annotation = info.annotation
            description = (info.json_schema_extra or {}).get("desc", "") or ""
            outputs.append(
                OutputField(
                    key=keys[(pname, fname)],
                    name=fname,
                    predictor=display_name(pname),
                    type_name=type_name(annotation),
                    streams=streams(annotation),
                    reasoning=is_reasoning(fname, annotation),
                    description="" if description.startswith("${") else description,
                )
            )
    if instructions.startswith("Given the fields"):
        instructions = ""
    return ProgramInfo(
        label=label, inputs=program_inputs(program), outputs=tuple(outputs), instructions=instructions
    )
