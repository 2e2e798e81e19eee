"""Failures become one line without secrets; only transient ones are retried."""

from __future__ import annotations

from dspy.utils.exceptions import AdapterParseError, LMAuthError, LMRateLimitError, LMTransportError

from tui.models.errors import ModelError
from tui.streaming.faults import StreamStalled, classify, redact


def test_keys_and_bearer_tokens_are_redacted():
    text = redact("bad key sk-proj-AbCdEf123456 and sk-ant-api03-xyz, header Bearer eyJhbGciOi")
    assert "AbCdEf" not in text and "api03" not in text and "eyJ" not in text


def test_control_characters_and_newlines_fold_to_one_line():
    assert redact("boom\n   To fix:\x1b[2J now") == "boom    To fix: [2J now"


def test_rate_limits_retry_and_carry_retry_after():
    info = classify(LMRateLimitError("slow down", status=429, retry_after=3.0))
    assert info.retryable and info.retry_after == 3.0 and info.message.startswith("429")


def test_auth_errors_are_final():
    info = classify(LMAuthError("Incorrect API key provided: sk-abc123", status=401))
    assert not info.retryable and "sk-abc" not in info.message


def test_stalls_and_cut_connections_retry():
    assert classify(StreamStalled(5, had_tokens=True)).retryable
    assert classify(LMTransportError("connection closed mid-chunk")).retryable


def test_a_parse_failure_suggests_the_plain_adapter():
    import dspy

    signature = dspy.Signature("question -> answer")
    error = AdapterParseError(adapter_name="ChatAdapter", signature=signature, lm_response="{answer}")
    info = classify(error)
    assert not info.retryable and "--adapter plain" in info.message


def test_a_model_error_raised_inside_dspy_keeps_its_line():
    try:
        try:
            raise ModelError("cannot load /x/model.gguf: not a GGUF file")
        except ModelError as inner:
            raise RuntimeError("engine failed") from inner
    except RuntimeError as outer:
        info = classify(outer)
    assert not info.retryable and info.message == "cannot load /x/model.gguf: not a GGUF file"
