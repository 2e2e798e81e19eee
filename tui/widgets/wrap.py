"""Greedy word wrapping by terminal cells, as offsets into the text, so a row can be re-wrapped alone.

Greedy wrapping is prefix-stable: text appended at the end can only change the last row, so a
growing line is re-wrapped from the start of its last row, never from its beginning.
"""

from __future__ import annotations

import re

from rich.cells import cell_len

_CHUNK = re.compile(r"\S+\s*|\s+")


def _fold(text: str, start: int, end: int, width: int) -> tuple[list[tuple[int, int]], int, int]:
    """Split text[start:end], wider than a row, at cell boundaries.

    Returns the full rows, the offset where the last, partial row starts, and its width.
    """
    rows: list[tuple[int, int]] = []
    row_start, used = start, 0
    for index in range(start, end):
        char_width = cell_len(text[index])
        if used + char_width > width and index > row_start:
            rows.append((row_start, index))
            row_start, used = index, 0
        used += char_width
    return rows, row_start, used


def wrap_offsets(text: str, width: int, start: int = 0) -> list[tuple[int, int]]:
    """Rows of text[start:] as (start, end) offsets, each at most `width` cells (trailing spaces aside).

    Always at least one row, so an empty line still takes a line on screen.
    """
    width = max(width, 1)
    rows: list[tuple[int, int]] = []
    row_start, used = start, 0
    for match in _CHUNK.finditer(text, start):
        chunk_start, chunk_end = match.span()
        chunk = match.group()
        word = chunk.rstrip() or chunk  # a run of spaces is a word of its own
        word_end = chunk_start + len(word)
        word_width = cell_len(word)
        if used and used + word_width > width:
            rows.append((row_start, chunk_start))
            row_start, used = chunk_start, 0
        if word_width > width:
            folded, row_start, used = _fold(text, chunk_start, word_end, width)
            rows.extend(folded)
        else:
            used += word_width
        used += chunk_end - word_end  # trailing spaces may overhang the row; they count for what follows
    rows.append((row_start, len(text)))
    return rows
