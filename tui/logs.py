"""Logging goes to a file, never to the screen: Textual draws on stderr, and users read one-line errors."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tui.streaming.safe_text import hide_secrets


class _RedactingFormatter(logging.Formatter):
    """Keys never reach the log file; tracebacks keep their lines and indentation."""

    def format(self, record: logging.LogRecord) -> str:
        return hide_secrets(super().format(record))


def log_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_log_dir("dspy-stream")) / "dspy-stream.log"


def quiet_environment() -> None:
    """Environment that must be set before DSPy/LiteLLM import: no network lookups at startup."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")


def send_logs_to_file(path: Path | None = None) -> Path:
    """Route every logger (DSPy's own stderr handler included) and warnings to one file."""
    path = path or log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in root.handlers[:]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in ("dspy", "LiteLLM", "litellm", "httpx", "llama_cpp"):
        logger = logging.getLogger(name)
        for existing in logger.handlers[:]:
            logger.removeHandler(existing)
        logger.propagate = True
    logging.captureWarnings(True)
    return path
