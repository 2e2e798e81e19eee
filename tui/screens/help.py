"""HelpScreen: the keys, the modes, and how to read a pane."""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from tui.streaming.program_info import ProgramInfo
from tui.widgets.program_outline import signature_line

ABOUT = """
## Reading a pane

The pane shows the question, then the answer as it streams: plain text while it streams,
Markdown in the current pane and once an answer has ended. A program that says more than its
answer (reasoning, other output fields, several stages, tool calls) streams all of it above the
answer, in the order it arrives: a labelled section per field, reasoning dimmed (click its
title to fold it), tool calls and stages as timeline lines (`→ tool(args)`, `← result`,
`▸ stage`). Fields that do not stream (numbers, lists, objects) appear when the answer ends.

The status line: the state (queued, loading, streaming, retrying, done, failed, cancelled),
tokens, tokens/s, time to first token (TTFT), time to the first token of the final output field
(TTFO, where another field streams first), the provider's input and output token counts and the
cost in USD once the model's price is known, elapsed time, attempts, and how full the stream's
buffer is. A retry reads `retry 2/3 in 1.4 s - 429 rate limited`, marked
`[injected]` when recovery mode failed the attempt on purpose. A failed stream keeps its
partial answer, with the error on one line.

## Modes

- no mode: ask questions one after another, and while others stream
- `--mode simple`: one question
- `--mode concurrent`: all the questions at once, at most `--concurrency` streaming
- `--mode aggregate`: opens in the merged view
- `--mode recovery`: the embedded model fails a share of attempts (`--fault-rate`) to show retries
- `--mode demo`: a built-in set of questions
"""


def _key(binding: Binding) -> str:
    return " / ".join(f"`{key.strip()}`" for key in binding.key.split(","))


def program_markdown(info: ProgramInfo) -> str:
    """The program this dashboard runs, its input fields and its output fields."""
    outputs = ", ".join(
        f"`{field.key}`" + ("" if field.type_name == "str" else f" ({field.type_name})")
        for field in info.outputs
    )
    lines = [
        "## Program",
        "",
        f"`{info.label}`: `{signature_line(info)}`",
        "",
        f"- inputs: {', '.join(f'`{name}`' for name in info.inputs)}"
        + (" (one box each; Tab moves between them, Enter asks)" if len(info.inputs) > 1 else ""),
        f"- outputs: {outputs or 'known once it runs'}",
    ]
    if info.instructions:
        lines += ["", "> " + " ".join(info.instructions.split())]
    return "\n".join(lines) + "\n\n"


def help_markdown(bindings: Iterable[BindingType], info: ProgramInfo | None = None) -> str:
    rows = [program_markdown(info)] if info is not None else []
    rows += ["## Keys", "", "| key | does |", "|---|---|"]
    for binding in bindings:
        if isinstance(binding, Binding) and binding.description:
            rows.append(f"| {_key(binding)} | {binding.tooltip or binding.description} |")
    rows += ["| `tab` / `shift+tab` | Move focus between the input boxes and the panes |"]
    rows += ["| typing while a pane has focus | Goes to the question box |"]
    rows += ["| a multi-line paste | Asks each non-empty line as its own question |"]
    rows += ["| `ctrl+p` | Command palette: every action by name |"]
    return "\n".join(rows) + "\n" + ABOUT


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close help")]

    def __init__(self, bindings: Iterable[BindingType], info: ProgramInfo | None = None) -> None:
        super().__init__(id="help")
        self.text = help_markdown(bindings, info)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Markdown(self.text)
