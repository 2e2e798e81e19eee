"""Saved sessions keep answers exactly as they streamed, with keys hidden."""

from __future__ import annotations

from tui.streaming.faults import hide_secrets
from tui.transcript import _clean


def test_saved_text_keeps_indentation_tabs_and_newlines_but_not_keys():
    answer = "```python\ndef f():\n    return 1\t# sk-proj-ABCDEFsecret123\n```\n"
    cleaned = _clean({"answer": answer, "figures": [1.0, float("nan")]})
    assert cleaned["answer"] == answer.replace("sk-proj-ABCDEFsecret123", "sk-…")
    assert cleaned["figures"] == [1.0, None]


def test_hiding_secrets_changes_nothing_else():
    text = "  indented\n\ttabbed\nBearer abc.def and sk-ant-api03-xyz\n"
    assert hide_secrets(text) == "  indented\n\ttabbed\nBearer … and sk-…\n"


def test_a_saved_session_keeps_the_settings_as_the_report_does_without_url_credentials():
    import json
    from datetime import datetime

    from tui.config import Settings
    from tui.streaming.session import StreamSession
    from tui.transcript import session_dict

    settings = Settings(model="openai/m", api_base="http://ann:hunter2@127.0.0.1:9/v1?token=t")
    saved = session_dict(StreamSession(settings), settings, datetime.now())["settings"]
    assert saved["api_base"] == "http://127.0.0.1:9/v1"
    assert saved == json.loads(json.dumps(settings.public_dict()))
