"""The text pieces under the panes: wrapping, untrusted text, Markdown blocks, the merged log."""

from __future__ import annotations

import random
from types import SimpleNamespace

from textual.app import App, ComposeResult

from tui.streaming.events import Retrying, Status, Token
from tui.streaming.metrics import StreamMetrics
from tui.streaming.program_info import ProgramInfo
from tui.widgets.field_section import TimelineBlock
from tui.widgets.markdown_blocks import BlockSplitter
from tui.widgets.merged_log import MergedLog, MergedLogView
from tui.widgets.sanitize import one_line, sanitize
from tui.widgets.stream_pane import StreamPane
from tui.widgets.stream_status import StatusFacts, status_content
from tui.widgets.stream_text import StreamText
from tui.widgets.wrap import wrap_offsets


def test_wrapping_keeps_every_character_and_fits_the_width():
    text = "Streaming answers arrive one token at a time, so the dashboard can show each word."
    rows = wrap_offsets(text, 20)
    assert "".join(text[a:b] for a, b in rows) == text
    assert all(len(text[a:b].rstrip()) <= 20 for a, b in rows)
    assert wrap_offsets("", 10) == [(0, 0)]
    long_word = "abcdefghijkl"
    assert [long_word[a:b] for a, b in wrap_offsets(long_word, 5)] == ["abcde", "fghij", "kl"]
    assert len(wrap_offsets("中文字中文字", 4)) == 3  # two cells a character


def test_wrapping_is_prefix_stable_so_a_growing_line_rewraps_only_its_last_row():
    words = ["a", "bb", "ccc ", "a-very-long-word-indeed", "中文", "  ", "x"]
    chooser = random.Random(7)
    for _ in range(500):
        text = "".join(
            chooser.choice(words) + chooser.choice(["", " "]) for _ in range(chooser.randint(0, 40))
        )
        width = chooser.randint(1, 16)
        cut = chooser.randint(0, len(text))
        before = wrap_offsets(text[:cut], width)
        assert before[:-1] + wrap_offsets(text, width, before[-1][0]) == wrap_offsets(text, width)


def test_sanitize_shows_escapes_and_controls_as_visible_pictures():
    assert sanitize("\x1b[2Jred\x07") == "␛[2Jred␇"
    assert sanitize("a\r\nb\tc\x9b1m") == "a\nb    c\ufffd1m"
    assert sanitize("[bold red]x[/]") == "[bold red]x[/]"
    assert one_line("two\nlines") == "two lines"


def test_markdown_blocks_never_split_an_open_code_fence():
    splitter = BlockSplitter()
    text = "Intro\n\n```python\nx = 1\n\ny = 2\n```\n\n- a\n\n  more of a\n- b\n\nEnd\n"
    blocks = [block for end in range(len(text) + 1) for block in splitter.feed(text[:end])]
    assert blocks == ["Intro", "```python\nx = 1\n\ny = 2\n```", "- a\n\n  more of a\n- b"]
    assert splitter.tail == "End"


def test_merged_log_gathers_a_tick_of_each_stream_into_one_line():
    log = MergedLog()
    for word in ("Rust ", "is "):
        log.add_text(1, "answer", word)
        log.add_text(2, "answer", word.upper())
    log.seal()
    log.add_text(2, "answer", "fast")  # stream 2 was last: its line goes on
    log.add_note(1, "✓ done")
    assert [(e.stream_id, e.kind, e.text) for e in log.entries] == [
        (1, "answer", "Rust is "),
        (2, "answer", "RUST IS fast"),
        (1, "note", "✓ done"),
    ]


def test_merged_log_is_bounded():
    log = MergedLog(max_entries=100)
    for n in range(1000):
        log.add_note(n % 3 + 1, f"note {n}")
    assert len(log.entries) <= 100 and log.end == 1000 and log.entry(999).text == "note 999"


def test_status_line_reads_a_retry_and_marks_an_injected_fault():
    retry = Retrying(attempt=2, max_attempts=4, delay=1.4, error="429 rate limited", injected=True)
    facts = StatusFacts(
        "retrying", StreamMetrics(clock=lambda: 5.0), max_attempts=4, retry=retry, retry_left=1.4
    )
    line = status_content(facts, now=5.0).plain
    assert line.endswith("retry 2/3 in 1.4 s · 429 rate limited [injected]")
    # Three panes a row at 160 columns leave 48 for the line: the reason is whole in them.
    real = Retrying(attempt=1, max_attempts=4, delay=29.5, error="429 rate limited")
    facts = StatusFacts(
        "retrying", StreamMetrics(clock=lambda: 5.0), max_attempts=4, retry=real, retry_left=29.5
    )
    narrow = status_content(facts, now=5.0).plain
    assert narrow.endswith("429 rate limited") and len(narrow) <= 48, narrow
    assert "buf" not in line and "attempt" not in line  # an empty buffer and a first attempt go unsaid


def test_status_line_is_short_and_names_a_later_attempt_and_a_full_buffer():
    metrics = StreamMetrics(clock=lambda: 5.0)
    metrics.start()
    metrics.start_attempt()
    metrics.start_attempt()
    for _ in range(73):
        metrics.record_token("answer")
    metrics.finish("done")
    done = status_content(StatusFacts("done", metrics, max_attempts=4, buffer_size=100), now=5.0).plain
    assert done.startswith("✓ done · 73 tok · ") and "attempt 2/4" in done and "buf" not in done
    live = StatusFacts("streaming", metrics, queue_fill=12, buffer_size=100, max_attempts=4)
    assert "buf 12/100" in status_content(live, now=5.0).plain
    first = StreamMetrics(clock=lambda: 5.0)
    first.start()
    first.start_attempt()
    first.record_token("answer")
    first.finish("done")
    line = status_content(StatusFacts("done", first, max_attempts=4, buffer_size=100), now=5.0).plain
    assert "attempt" not in line and len(line) <= 46  # one row of a 50-column pane


class TextHost(App[None]):
    """A tiny host for one view, as the dashboard would hold it."""

    def __init__(self, view) -> None:
        super().__init__()
        self.view = view

    def compose(self) -> ComposeResult:
        yield self.view


async def test_stream_text_wraps_appends_and_follows_the_end():
    view = StreamText()
    async with TextHost(view).run_test(size=(30, 5)) as pilot:
        for word in ("one two three four five six seven eight nine ten " * 4).split(" "):
            view.write(word + " ")
        view.write("\n[b]not bold[/b] \x1b[31m")
        await pilot.pause()
        assert view.text.endswith("[b]not bold[/b] ␛[31m")
        assert view.row_count > 5
        assert view.scroll_y == view.max_scroll_y > 0  # followed the end
        last_rows = [view.render_line(y).text for y in range(5)]
        assert "[b]not bold[/b] ␛[31m" in "".join(last_rows)


async def test_stream_text_written_while_hidden_leaves_the_layout_alone_and_catches_up_on_show():
    view = StreamText()
    async with TextHost(view).run_test(size=(30, 5)) as pilot:
        view.write("first line\n")
        await pilot.pause()
        view.display = False  # its pane shows the answer as Markdown instead
        await pilot.pause()
        compositor = pilot.app.screen._compositor
        compositor.full_map  # noqa: B018 - arranged now, so a stale map shows below
        for number in range(40):
            view.write(f"line {number}\n")
        await pilot.pause()
        # A hidden widget's refresh would make Textual arrange the whole screen again.
        assert not compositor._full_map_invalidated
        assert view.max_scroll_y == 0
        view.display = True
        await pilot.pause()
        await pilot.pause()
        assert view.row_count == 42
        assert view.scroll_y == view.max_scroll_y > 30  # caught up, and follows the end
        assert "line 39" in "".join(view.render_line(y).text for y in range(5))


async def test_merged_log_view_tags_each_line_and_drops_blank_ones():
    log = MergedLog()
    view = MergedLogView(log)
    async with TextHost(view).run_test(size=(60, 10)) as pilot:
        log.add_text(1, "answer", "first line\n\nsecond")
        log.seal()
        view.sync()
        log.add_text(1, "answer", " line")
        log.add_text(2, "reasoning", "thinking")
        log.seal()
        view.sync()
        await pilot.pause()
        assert view.text.split("\n") == [
            "[Stream 1] first line",
            "[Stream 1] second line",
            "[Stream 2] (reasoning) thinking",
        ]


def test_a_stream_waiting_for_the_local_model_reads_queued_not_streaming():
    metrics = StreamMetrics(clock=lambda: 5.0)
    run = SimpleNamespace(job=SimpleNamespace(question="q"), metrics=metrics, info=ProgramInfo("predict"))
    pane = StreamPane(run, 1, clock=lambda: 5.0)  # type: ignore[arg-type]
    assert pane.state_at(5.0) == "queued"  # not started: the session's limit
    metrics.start()
    assert pane.state_at(5.0) == "starting"  # the request is out, no token yet
    pane._on_event(Status("queued"))  # what the core does when the engine is busy
    metrics.state = "queued"
    assert pane.state_at(5.0) == "queued"
    pane._on_event(Status("loading model"))
    metrics.state = "loading model"
    assert pane.state_at(5.0) == "loading model"
    pane._on_event(Status("streaming"))  # the engine started on this stream
    assert pane.state_at(5.0) == "starting"
    pane._on_event(Token("answer", "Hi"))
    assert pane.state_at(5.0) == "streaming"


async def test_a_timeline_keeps_its_newest_lines_for_a_program_that_prints_thousands():
    block = TimelineBlock()
    async with TextHost(block).run_test(size=(40, 10)) as pilot:
        block.add_lines([f"» line {i}" for i in range(300)])
        block.add_lines([f"» line {i}" for i in range(300, 3000)])
        await pilot.pause()
        lines = block.text.splitlines()
        assert lines[-1] == "» line 2999" and len(lines) <= TimelineBlock.MAX_LINES
        assert lines == [f"» line {i}" for i in range(3000 - len(lines), 3000)]  # newest, in order
        assert block.lines == 3000
