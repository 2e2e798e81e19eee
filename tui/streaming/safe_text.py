"""Model output is untrusted: make control characters visible instead of letting a terminal act on them."""

from __future__ import annotations

import re

# C0 and C1 control characters except newline and tab, plus DEL; and the bidi controls
# (embeddings, overrides, isolates, marks) that reorder what a terminal shows ("Trojan Source").
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{BIDI_CONTROLS}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every control character (but newline and tab) written out as `\\xNN`."""
    return _CONTROL.sub(_escape, text)


# Key shapes: provider keys ("sk-...", "sk-ant-...", masked "sk-abc***") and bearer tokens, only
# where the rest looks like a key (digits, masks or length), so "sk-learn" and "bearer of bad
# news" stay as written.
_KEY_SHAPE = re.compile(r"\b(sk-)([\w\-*.]{6,})|\b([Bb]earer\s+)([\w\-.~+/=*]{6,})")
# Credentials in a URL: scheme://user:password@host
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^\s/:@]*:)([^\s/@]+)(@)", re.IGNORECASE)
_SECRET_NAME = re.compile(r"(API_?KEY|_KEY|TOKEN|SECRET|PASSWORD|PASSWD)$", re.IGNORECASE)
_MIN_SECRET = 6  # shorter values are words, not keys
_registered: set[str] = set()
_from_environment: frozenset[str] | None = None
_longest_first: list[str] | None = None  # both, sorted: asked for every token shown


def register_secret(value: str | None) -> None:
    """A value (a key from the config, a password in --api-base) to hide wherever it appears."""
    global _longest_first
    if value and len(value) >= _MIN_SECRET:
        _registered.add(value)
        _longest_first = None


def _known_secrets() -> list[str]:
    global _from_environment, _longest_first
    if _longest_first is None:
        if _from_environment is None:
            import os

            _from_environment = frozenset(
                value
                for name, value in os.environ.items()
                if _SECRET_NAME.search(name) and len(value) >= _MIN_SECRET
            )
        _longest_first = sorted(_from_environment | _registered, key=len, reverse=True)
    return _longest_first


def _looks_like_key(body: str, *, bearer: bool) -> bool:
    if "*" in body or any(ch.isdigit() for ch in body) or len(body) >= 20:
        return True
    # A bearer token without digits is still mixed case or punctuated (JWTs: "eyJhbGciOi").
    return bearer and (any(ch.isupper() for ch in body[1:]) or any(ch in "._-~+/=" for ch in body))


def _hide_shape(match: re.Match[str]) -> str:
    if match.group(1):
        return "sk-…" if _looks_like_key(match.group(2), bearer=False) else match.group()
    if _looks_like_key(match.group(4), bearer=True):
        return match.group(3) + "…"
    return match.group()


def hide_secrets(text: str) -> str:
    """`text` with API keys and bearer tokens hidden, and nothing else changed.

    The one redaction every writer uses (screen, report, transcript, history, logs): the actual
    key values found in the environment and the config, passwords in URLs, and key shapes.
    """
    for secret in _known_secrets():
        if secret in text:
            text = text.replace(secret, "…")
    if "://" in text:  # each pattern is tried at every word: only where it can match
        text = _URL_PASSWORD.sub(lambda m: m.group(1) + "…" + m.group(3), text)
    if "sk-" in text or "earer" in text:
        text = _KEY_SHAPE.sub(_hide_shape, text)
    return text


def hide_secrets_in(value):
    """`hide_secrets` through every string of a JSON-like value (dicts, lists, tuples)."""
    if isinstance(value, str):
        return hide_secrets(value)
    if isinstance(value, dict):
        return {key: hide_secrets_in(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [hide_secrets_in(item) for item in value]
    return value


_SECRET_STARTS = ("sk-", "://")  # where a key shape or a URL's password begins


def _may_become_secret(word: str) -> bool:
    """`word`, or its end, could be the start of a key or a URL password: it has one begun, or
    ends with the first characters of one."""
    for start in (*_known_secrets(), *_SECRET_STARTS):
        at = word.find(start[0])
        while at != -1:
            piece = word[at:]
            if start.startswith(piece) or piece.startswith(start):
                return True
            at = word.find(start[0], at + 1)
    return False


class HeldBack:
    """Streamed text made safe to show as it grows, secrets hidden: a word that could be the
    start of a key waits for the next piece (up to its end, or a length no key has), so a key
    split across tokens is whole when it is hidden; any other word is given out at once."""

    LONGEST_WORD = 512

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        text = self._held + text
        cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t")) + 1
        word = text[cut:]
        if len(word) > self.LONGEST_WORD or not _may_become_secret(word):
            cut = len(text)
        self._held = text[cut:]
        return hide_secrets(text[:cut]) if cut else ""

    def flush(self) -> str:
        """The word still held, at the end of the text."""
        held, self._held = self._held, ""
        return hide_secrets(held) if held else ""

    @property
    def holding(self) -> bool:
        return bool(self._held)
