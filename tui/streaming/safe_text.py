"""Model output is untrusted: make control characters visible instead of letting a terminal act on them."""

from __future__ import annotations

import re

# C0 and C1 control characters except newline and tab, plus DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every control character (but newline and tab) written out as `\\xNN`."""
    return _CONTROL.sub(_escape, text)
