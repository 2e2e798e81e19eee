"""Split growing Markdown into blocks that will not change, so each is rendered once.

A block ends at a blank line outside a code fence that is followed by an unindented line
(an indented one may continue a list item). Everything after the last such boundary is the
tail, re-rendered while the text grows. An unclosed fence stays in the tail, so a streamed
code block keeps its body (the trap of `Markdown.update()` then `append()` inside a fence).
"""

from __future__ import annotations

import re

_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


class BlockSplitter:
    """Feed it the whole text as it grows; it reports the blocks that have become stable."""

    def __init__(self) -> None:
        self.source = ""
        self._scanned = 0  # offset of the first line not yet scanned
        self._block_start = 0
        self._fence: str | None = None
        self._blank_before = False

    def feed(self, source: str) -> list[str]:
        """New stable blocks since the last call. `source` must extend the previous one."""
        if not source.startswith(self.source):
            raise ValueError("the source must grow at the end; make a new splitter to start over")
        self.source = source
        blocks: list[str] = []
        while True:
            end = source.find("\n", self._scanned)
            if end < 0:
                return blocks
            line = source[self._scanned : end]
            self._scan_line(line, self._scanned, blocks)
            self._scanned = end + 1

    def _scan_line(self, line: str, offset: int, blocks: list[str]) -> None:
        fence = _FENCE.match(line)
        if self._fence is not None:
            closes = fence and fence.group(1)[0] == self._fence[0] and len(fence.group(1)) >= len(self._fence)
            if closes and not line[fence.end() :].strip():
                self._fence = None
            return
        if not line.strip():
            self._blank_before = True
            return
        if self._blank_before and not line[0].isspace():
            block = self.source[self._block_start : offset].strip("\n")
            if block.strip():
                blocks.append(block)
            self._block_start = offset
        self._blank_before = False
        if fence:
            self._fence = fence.group(1)

    @property
    def tail(self) -> str:
        """The text after the last stable block: still growing, rendered again at each change."""
        return self.source[self._block_start :].strip("\n")
