"""An example program for `dspy-stream --program examples/research_answer.py:ResearchAnswer`.

Two stages with their own signatures: the first reads notes and drafts an answer, thinking
step by step; the second gives it a title and a confidence. Copy it and make it yours:

    dspy-stream --program examples/research_answer.py:ResearchAnswer \\
        --input notes=@examples/notes.md --input question="What does dspy-stream measure?"
"""

from __future__ import annotations

import dspy


class Draft(dspy.Signature):
    """Answer the question from the notes only; say so when the notes do not tell."""

    notes: str = dspy.InputField(desc="what we know")
    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="two or three sentences")


class Headline(dspy.Signature):
    """Give the answer a short title and say how sure it is."""

    question: str = dspy.InputField()
    draft: str = dspy.InputField()
    title: str = dspy.OutputField(desc="at most eight words")
    confidence: float = dspy.OutputField(desc="between 0 and 1")


class ResearchAnswer(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.draft = dspy.ChainOfThought(Draft)
        self.headline = dspy.Predict(Headline)

    def forward(self, notes: str, question: str) -> dspy.Prediction:
        draft = self.draft(notes=notes, question=question)
        headline = self.headline(question=question, draft=draft.answer)
        return dspy.Prediction(answer=draft.answer, title=headline.title, confidence=headline.confidence)

    async def aforward(self, notes: str, question: str) -> dspy.Prediction:
        draft = await self.draft.acall(notes=notes, question=question)
        headline = await self.headline.acall(question=question, draft=draft.answer)
        return dspy.Prediction(answer=draft.answer, title=headline.title, confidence=headline.confidence)


def make_program() -> dspy.Module:
    """A factory works too: `--program examples/research_answer.py:make_program`."""
    return ResearchAnswer()
