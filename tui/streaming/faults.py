"""Which failures are worth another attempt, and the one line a user reads about each."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dspy.utils.exceptions import (
    AdapterParseError,
    LMAuthError,
    LMBillingError,
    LMConfigurationError,
    LMError,
    LMInvalidRequestError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
    LMTransportError,
)

from tui.models.errors import ModelError
from tui.streaming.safe_text import hide_secrets, register_secret

__all__ = ["hide_secrets", "register_secret"]

RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
FINAL_STATUS = frozenset({400, 401, 403, 404, 422})
_SSE_LINE_LIMIT = re.compile(r"SSE line exceeds limit \((\d+) > (\d+)\)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


class StreamStalled(Exception):
    """No token arrived within the timeout (before the first one, or between two)."""

    def __init__(self, timeout: float, had_tokens: bool) -> None:
        where = "between tokens" if had_tokens else "for the first token"
        super().__init__(f"stalled: no token for {timeout:g} s {where}")


class InjectedFault(Exception):
    """A transient fault put into an attempt on purpose (recovery mode)."""

    def __init__(self, after_tokens: int) -> None:
        super().__init__(f"injected fault after {after_tokens} tokens")


class StreamIncomplete(Exception):
    """The program finished but what streamed does not match the final prediction."""


class ProgramMisbehaved(Exception):
    """The user's program ended its stream in a way no stream should: it exited, was
    interrupted, or returned nothing. Its stream fails; the process and other streams go on."""

    @classmethod
    def exited(cls, exc: BaseException) -> ProgramMisbehaved:
        if isinstance(exc, SystemExit):
            return cls(f"the program called sys.exit({'' if exc.code is None else repr(exc.code)})")
        return cls(f"the program raised {type(exc).__name__}")


@dataclass(frozen=True)
class FaultInfo:
    retryable: bool
    message: str
    retry_after: float | None = None


def redact(text: str) -> str:
    """One line for a user: secrets hidden, control characters and newlines folded to spaces."""
    return _CONTROL.sub(" ", hide_secrets(text)).strip()


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it was raised from: DSPy wraps engine errors in its own."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _short(exc: BaseException, limit: int = 160) -> str:
    text = str(getattr(exc, "message", None) or exc or type(exc).__name__)
    # DSPy's messages go on with indented "To fix:" advice; the first line is the error itself.
    text = redact(text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def classify(exc: BaseException) -> FaultInfo:
    """Decide retry or not, and phrase the failure as one line: kind, status, what to do."""
    status = _status_of(exc)
    retry_after = getattr(exc, "retry_after", None)
    retry_after = float(retry_after) if isinstance(retry_after, (int, float)) else None
    if isinstance(exc, StreamStalled | InjectedFault):
        return FaultInfo(True, str(exc))
    if isinstance(exc, ProgramMisbehaved):
        return FaultInfo(False, str(exc))
    for cause in _causes(exc):
        if isinstance(cause, ModelError):
            return FaultInfo(False, redact(str(cause)))
        if isinstance(cause, AdapterParseError):
            if cause.adapter_name == "PlainAdapter":
                hint = "a larger --model may follow it"
                return FaultInfo(False, f"the model's reply could not be read ({hint}): {_short(cause)}")
            return FaultInfo(False, "the model did not answer in DSPy's field format: try --adapter plain")
    for cause in _causes(exc):
        oversized = _SSE_LINE_LIMIT.search(str(cause))
        if oversized:
            # The same answer brings the same chunk: another attempt cannot succeed.
            limit = int(oversized.group(2))
            return FaultInfo(
                False,
                f"the server sent a chunk larger than {limit // 1024} KiB "
                f"({int(oversized.group(1)):,} bytes), more than one streamed line may hold",
            )
    if isinstance(exc, StreamIncomplete):
        return FaultInfo(False, f"incomplete stream: {_short(exc)}")
    if isinstance(exc, LMAuthError) or status in (401, 403):
        return FaultInfo(False, f"{status or 401} authentication failed: check the API key ({_short(exc)})")
    if isinstance(exc, LMBillingError):
        return FaultInfo(False, f"billing: {_short(exc)}")
    if isinstance(exc, LMRateLimitError) or status == 429:
        return FaultInfo(True, f"429 rate limited: {_short(exc, 100)}", retry_after)
    if status in FINAL_STATUS or isinstance(exc, LMInvalidRequestError):
        return FaultInfo(False, f"{status or 400} request rejected: {_short(exc)}")
    if status in RETRYABLE_STATUS or isinstance(exc, LMServerError):
        return FaultInfo(True, f"{status or 500} server error: {_short(exc, 100)}", retry_after)
    if isinstance(exc, LMTimeoutError | TimeoutError):
        return FaultInfo(True, f"timed out: {_short(exc, 100)}")
    if isinstance(exc, LMTransportError | ConnectionError | OSError):
        return FaultInfo(True, f"connection failed: {_short(exc, 120)}")
    if isinstance(exc, LMConfigurationError):
        return FaultInfo(False, f"configuration: {_short(exc)}")
    if isinstance(exc, LMError):
        # A stream cut off mid-way surfaces as an unexpected/assembly error without a status.
        return FaultInfo(status is None, f"{type(exc).__name__}: {_short(exc)}")
    return FaultInfo(False, f"{type(exc).__name__}: {_short(exc)}")
