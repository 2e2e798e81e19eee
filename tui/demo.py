"""The built-in demo: questions that show streaming side by side, Markdown, lengths and retries."""

from __future__ import annotations

DEMO_QUESTIONS: tuple[str, ...] = (
    "What is Rust, in two sentences?",
    "Explain async programming to a new developer.",
    "Write a Python function that reverses a string, in a code block.",
    "List three benefits of streaming answers token by token.",
    "What does a bounded queue protect a program from?",
    "Summarise the difference between concurrency and parallelism.",
)

DEMO_TIPS = "F3 merged view · F4 summary · F2 one pane maximised · F6 next pane · F1 help"
