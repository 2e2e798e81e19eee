"""DSPy programs the tests run through `--program tests/programs/sample_programs.py:NAME`."""

from __future__ import annotations

from typing import Literal

import dspy
import pydantic


class Verdict(pydantic.BaseModel):
    label: str
    score: int


class DraftThenPolish(dspy.Module):
    """Two stages: a chain of thought drafts an answer from the context, a second predictor polishes it."""

    def __init__(self) -> None:
        super().__init__()
        self.draft = dspy.ChainOfThought("context, question -> answer")
        self.polish = dspy.Predict("question, draft -> answer, confidence: float")

    def forward(self, context: str, question: str) -> dspy.Prediction:
        draft = self.draft(context=context, question=question)
        return self.polish(question=question, draft=draft.answer)

    async def aforward(self, context: str, question: str) -> dspy.Prediction:
        draft = await self.draft.acall(context=context, question=question)
        return await self.polish.acall(question=question, draft=draft.answer)


class SyncTwoStage(dspy.Module):
    """Only a sync `forward`: it runs in a worker thread and still streams."""

    def __init__(self) -> None:
        super().__init__()
        self.outline = dspy.Predict("topic -> outline")
        self.write = dspy.Predict("topic, outline -> essay")

    def forward(self, topic: str) -> dspy.Prediction:
        outline = self.outline(topic=topic).outline
        return self.write(topic=topic, outline=outline)


class Typed(dspy.Signature):
    """Classify the text and explain why."""

    text: str = dspy.InputField()
    summary: str = dspy.OutputField()
    mood: Literal["happy", "sad"] = dspy.OutputField()
    tags: list[str] = dspy.OutputField()
    verdict: Verdict = dspy.OutputField()
    score: float = dspy.OutputField()


typed_program = dspy.Predict(Typed)


def make_qa() -> dspy.Module:
    """A factory: a function of no arguments that returns the program."""
    return dspy.ChainOfThought("question -> answer")


def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


agent = dspy.ReAct("question -> answer", tools=[weather, add], max_iters=5)

not_a_program = 42


def needs_arguments(size: int) -> dspy.Module:
    return dspy.Predict("question -> answer")


def broken_factory() -> dspy.Module:
    raise RuntimeError("the factory could not reach its database")


def refined() -> dspy.Module:
    """A Refine-like wrapper around a chain of thought: a plain `forward`, run in a thread."""
    return dspy.Refine(
        dspy.ChainOfThought("question -> answer"), N=2, reward_fn=lambda _a, _p: 1.0, threshold=0.5
    )


class MadeInForward(dspy.Module):
    """Its predictor exists only while `aforward` runs, so no listener can know it up front."""

    async def aforward(self, question: str) -> dspy.Prediction:
        return await dspy.Predict("question -> answer").acall(question=question)


class SideBySide(dspy.Module):
    """Two stages at once, then a third that joins them."""

    def __init__(self) -> None:
        super().__init__()
        self.pros = dspy.Predict("topic -> pros")
        self.cons = dspy.Predict("topic -> cons")
        self.verdict = dspy.Predict("pros, cons -> verdict")

    async def aforward(self, topic: str) -> dspy.Prediction:
        import asyncio

        pros, cons = await asyncio.gather(self.pros.acall(topic=topic), self.cons.acall(topic=topic))
        return await self.verdict.acall(pros=pros.pros, cons=cons.cons)


class ReturnsDict(dspy.Module):
    """`forward` returns a plain dict, not a Prediction."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = dspy.Predict("question -> answer")

    def forward(self, question: str) -> dict[str, str]:
        return {"answer": self.answer(question=question).answer, "source": "notes"}
