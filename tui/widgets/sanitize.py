"""Make untrusted model output safe to draw: every character is shown, none acts on the terminal.

Answers are never parsed as Rich/Textual markup (views build `Text` from plain strings); this
module handles what markup escaping cannot: escape sequences and control characters, which
are replaced with their visible Unicode "control picture" (ESC becomes ␛), so `\\x1b[2J` reads
as `␛[2J` instead of clearing the screen.
"""

from __future__ import annotations

import re

from tui.streaming.safe_text import BIDI_CONTROLS

_CONTROL = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{BIDI_CONTROLS}]")
_TAB = "    "


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ .. ␟
    if code == 0x7F:
        return "\u2421"  # ␡
    if code > 0xFF:
        return f"<U+{code:04X}>"  # a bidi control, shown instead of reordering the line
    return "\ufffd"  # C1 controls (0x80-0x9f, 8-bit CSI among them) have no picture


def sanitize(text: str) -> str:
    """The text with line endings normalised, tabs expanded and control characters made visible."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if "\t" in text:
        text = text.replace("\t", _TAB)
    return _CONTROL.sub(_picture, text)


def one_line(text: str) -> str:
    """Sanitized, on one line: for titles, status lines and notifications."""
    return sanitize(text.replace("\r\n", " ").replace("\n", " "))
