"""What a program asks for and what it answers: the shape every consumer lays a stream out by.

Built once per run from the loaded DSPy program (`tui.programs`), then read by the dashboard,
headless output, reports and history, none of which needs DSPy to read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutputField:
    """One output field of one predictor, in the order the program produces them."""

    key: str
    """The name tokens carry (`Token.field`): the field's name, or `predictor.field` where the same
    field name occurs in more than one predictor."""
    name: str
    predictor: str = ""
    type_name: str = "str"
    streams: bool = True
    """A `str` field streams token by token; the others appear, formatted, with the Prediction."""
    reasoning: bool = False
    """Shown dimmed and collapsible (ChainOfThought's `reasoning`, `dspy.Reasoning`)."""
    description: str = ""


@dataclass(frozen=True, slots=True)
class ProgramInfo:
    label: str
    """How the program is named on screen: `predict`, `cot`, `qa.py:QA`, `qa.py:QA · v2.json`."""
    inputs: tuple[str, ...] = ("question",)
    outputs: tuple[OutputField, ...] = (OutputField("answer", "answer"),)
    instructions: str = ""

    @property
    def primary_input(self) -> str:
        return self.inputs[0]

    def output(self, key: str) -> OutputField | None:
        return next((f for f in self.outputs if f.key == key), None)

    @property
    def final_output(self) -> OutputField:
        """The field whose first token is the time to first output token (TTFO): the last
        streamed field that is not reasoning (a number or a list arrives only with the Prediction)."""
        streamed = [f for f in self.outputs if not f.reasoning and f.streams]
        answers = [f for f in self.outputs if not f.reasoning]
        fields = streamed or answers or list(self.outputs)
        # A program whose predictors appear only inside `forward` shows no fields up front.
        return fields[-1] if fields else OutputField("answer", "answer")
