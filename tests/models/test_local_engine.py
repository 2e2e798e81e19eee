"""The embedded model through DSPy's real streaming path: tokens, queueing, loading and cancel."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import dspy
import pytest

from tui.config import Settings
from tui.models.errors import ModelError
from tui.models.lm_factory import build_lm, make_stream_listeners
from tui.models.local_engine import (
    EMBEDDED_MODEL_FILE,
    LocalModel,
    ModelState,
    model_path_for,
    shared_local_model,
)
from tui.models.plain_adapter import PlainAdapter
from tui.streaming.faults import classify


def test_embedded_model_ships_in_the_wheel(embedded_gguf: Path) -> None:
    assert embedded_gguf.name == EMBEDDED_MODEL_FILE
    assert embedded_gguf.stat().st_size > 50_000_000
    assert model_path_for("local") == embedded_gguf


def test_a_missing_model_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model file .*nothing\.gguf does not exist") as caught:
        model_path_for(f"local:{tmp_path / 'nothing.gguf'}")
    assert "\n" not in str(caught.value)


async def test_a_question_streams_tokens_and_ends_with_a_prediction(
    local_lm: dspy.LM, stream_question, program_for
) -> None:
    result = await stream_question(program_for("predict"), local_lm, PlainAdapter(), "Why is the sky blue?")

    assert result.prediction is not None
    answer = result.prediction.answer
    assert answer.strip()
    assert len(result.chunks) > 5, "the answer arrived in one piece, not token by token"
    assert result.text("answer") == answer
    assert result.states[-1] is ModelState.GENERATING


async def test_cot_streams_reasoning_then_answer(local_lm: dspy.LM, stream_question, program_for) -> None:
    result = await stream_question(program_for("cot"), local_lm, PlainAdapter(), "What is 2+2?")

    assert result.field_order == ["reasoning", "answer"]
    assert result.text("reasoning") == result.prediction.reasoning
    assert result.text("answer") == result.prediction.answer
    assert result.prediction.reasoning.strip() and result.prediction.answer.strip()


async def test_concurrent_questions_wait_their_turn_and_answer_as_alone(
    local_lm: dspy.LM, stream_question, program_for
) -> None:
    questions = ["Who wrote Hamlet?", "How many legs does a spider have?"]
    alone = [await stream_question(program_for("predict"), local_lm, PlainAdapter(), q) for q in questions]

    together = await asyncio.gather(
        *(
            asyncio.create_task(stream_question(program_for("predict"), local_lm, PlainAdapter(), q))
            for q in questions
        )
    )

    assert [r.prediction.answer for r in together] == [r.prediction.answer for r in alone]
    assert [r.text("answer") for r in together] == [r.prediction.answer for r in alone]
    assert ModelState.QUEUED in together[1].states
    assert together[1].states[-1] is ModelState.GENERATING


async def test_cancelling_the_consuming_task_stops_generation_within_a_token_or_two(
    stream_question, program_for
) -> None:
    lm = build_lm(Settings(model="local", temperature=0.0, max_tokens=400))
    model = shared_local_model(model_path_for("local"))
    await asyncio.to_thread(model.wait_idle, 30)
    five_chunks = asyncio.Event()

    def note(result) -> None:
        if len(result.chunks) >= 5:
            five_chunks.set()

    question = "Tell me a long story."
    task = asyncio.create_task(
        stream_question(program_for("predict"), lm, PlainAdapter(), question, on_chunk=note)
    )
    await five_chunks.wait()
    tokens_at_cancel, cancelled_at = model.generated_tokens, time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await asyncio.to_thread(model.wait_idle, 10), "generation ran on after the cancel"
    assert model.generated_tokens - tokens_at_cancel <= 3
    assert time.perf_counter() - cancelled_at < 1.0


def test_a_sync_call_completes_through_the_sync_engine(local_lm: dspy.LM) -> None:
    with dspy.context(lm=local_lm, adapter=PlainAdapter()):
        prediction = dspy.Predict("question -> answer")(question="Is the sun a star?")
    assert prediction.answer.strip()


async def test_a_sync_program_streams_too(local_lm: dspy.LM) -> None:
    program = dspy.Predict("question -> answer")
    stream = dspy.streamify(program, stream_listeners=make_stream_listeners(program, PlainAdapter()))
    chunks, prediction = [], None
    with dspy.context(lm=local_lm, adapter=PlainAdapter()):
        async for value in stream(question="What is the largest ocean?"):
            if isinstance(value, dspy.streaming.StreamResponse):
                chunks.append(value.chunk)
            elif isinstance(value, dspy.Prediction):
                prediction = value
    assert len(chunks) > 1
    assert "".join(chunks) == prediction.answer


async def test_the_model_loads_once_on_first_use_with_a_loading_state(embedded_gguf: Path) -> None:
    model = LocalModel(embedded_gguf)
    try:
        states: list[ModelState] = []
        finished = asyncio.Event()
        loop = asyncio.get_running_loop()

        def deliver(event) -> None:
            state = getattr(event, "state", None)
            if state is not None:
                loop.call_soon_threadsafe(states.append, state)
            if type(event).__name__ == "_Finished":
                loop.call_soon_threadsafe(finished.set)

        assert not model.loaded
        started = time.perf_counter()
        model.submit([{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0.0, deliver=deliver)
        await asyncio.wait_for(finished.wait(), 30)
        assert time.perf_counter() - started < 10
        assert model.loaded
        assert states == [ModelState.LOADING, ModelState.GENERATING]
    finally:
        model.close()


async def test_a_file_that_is_not_a_model_fails_with_one_line(
    tmp_path: Path, stream_question, program_for
) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(os.urandom(4096))
    lm = build_lm(Settings(model=f"local:{bad}", max_tokens=8))

    with pytest.raises(Exception) as caught:
        await stream_question(program_for("predict"), lm, PlainAdapter(), "Hello?")

    message = classify(caught.value).message
    assert message is not None and message.startswith("cannot load model file broken.gguf")
    assert "\n" not in message


async def test_a_question_longer_than_the_context_fails_with_one_line(
    local_lm: dspy.LM, stream_question, program_for
) -> None:
    with pytest.raises(Exception) as caught:
        await stream_question(program_for("predict"), local_lm, PlainAdapter(), "word " * 5000)

    message = classify(caught.value).message
    assert message is not None and "\n" not in message
    assert "more than the 4,096 the embedded model" in message
    assert "give shorter inputs, or a hosted --model" in message
    assert not classify(caught.value).retryable
