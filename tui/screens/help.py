"""HelpScreen: the keys, the modes, and how to read a pane."""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

ABOUT = """
## Reading a pane

The pane shows the question, then the answer as it streams: plain text while it streams,
Markdown in the current pane and once an answer has ended. With `--program cot` the reasoning
streams in its own dimmed section above the answer; click its title to fold it.

The status line: the state (queued, loading, streaming, retrying, done, failed, cancelled),
tokens/s, time to first token (TTFT), tokens, elapsed time, attempts, and how full the
stream's buffer is. A retry reads `retry 2/3 in 1.4 s - 429 rate limited`, marked
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


def help_markdown(bindings: Iterable[BindingType]) -> str:
    rows = ["## Keys", "", "| key | does |", "|---|---|"]
    for binding in bindings:
        if isinstance(binding, Binding) and binding.description:
            rows.append(f"| {_key(binding)} | {binding.tooltip or binding.description} |")
    rows += ["| `tab` / `shift+tab` | Move focus between the input and the panes |"]
    rows += ["| `ctrl+p` | Command palette: every action by name |"]
    return "\n".join(rows) + "\n" + ABOUT


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close help")]

    def __init__(self, bindings: Iterable[BindingType]) -> None:
        super().__init__(id="help")
        self.text = help_markdown(bindings)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Markdown(self.text)
