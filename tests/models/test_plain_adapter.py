"""PlainAdapter: small models, in-process or behind an OpenAI-compatible server, stream real answers."""

from __future__ import annotations

import re

import dspy
import pytest
from dspy.streaming import StreamListener
from dspy.utils.exceptions import AdapterParseError

from tui.config import Settings
from tui.models.lm_factory import build_lm
from tui.models.plain_adapter import (
    FINAL_ANSWER_QUESTION,
    PROMPT_LINES,
    REASONING_LINE,
    PlainAdapter,
    PlainStreamListener,
    make_listener,
)
from tui.streaming.faults import classify

QUESTIONS = [
    "What is the capital of France?",
    "Why is the sky blue?",
    "What is 2+2?",
    "Who wrote Hamlet?",
    "How many legs does a spider have?",
    "What is photosynthesis?",
    "Name a primary color.",
    "What is the boiling point of water?",
    "What does a CPU do?",
    "Is the sun a star?",
    "What is the largest ocean?",
    "Translate 'hello' to Spanish.",
    "What is gravity?",
    "Give me a synonym for happy.",
    "What language is spoken in Brazil?",
    "What is 10 times 3?",
    "Why do leaves change color in autumn?",
    "What is DNA?",
    "Who painted the Mona Lisa?",
    "What is the speed of light?",
]
PLACEHOLDER = re.compile(r"\{\w+\}|\$\{\w+\}")


def _assert_real_field(question: str, field_name: str, value: str, streamed: str) -> None:
    where = f"{field_name} for {question!r}: {value!r}"
    assert value.strip(), f"empty {where}"
    assert streamed == value, f"streamed text differs from the prediction, {where}"
    assert not PLACEHOLDER.search(value), f"placeholder in {where}"
    assert "[[" not in value and "##" not in value, f"field marker in {where}"
    assert value.strip() != question, f"question echoed as {where}"
    for line in PROMPT_LINES:
        assert line.lower() not in value.lower(), f"prompt line {line!r} echoed in {where}"


@pytest.mark.parametrize("kind", ["predict", "cot"])
async def test_twenty_questions_get_real_answers_in_the_models_own_words(
    kind: str, stream_question, program_for
) -> None:
    # Answers are cut at 10 tokens a field: enough to show each field is the model's own words.
    lm = build_lm(Settings(model="local", temperature=0.0, max_tokens=10))
    for question in QUESTIONS:
        program = program_for(kind)
        result = await stream_question(program, lm, PlainAdapter(), question)
        fields = list(program.predictors()[0].signature.output_fields)
        assert result.field_order == fields
        for field_name in fields:
            _assert_real_field(question, field_name, result.prediction[field_name], result.text(field_name))


def test_cot_asks_for_reasoning_then_for_the_answer_given_it() -> None:
    signature = dspy.ChainOfThought("question -> answer").predict.signature
    adapter = PlainAdapter()
    inputs = {"question": "What is 2+2?"}

    reasoning_call = adapter.field_messages(signature, [], inputs, {}, "reasoning")
    reasoning = "Two and two make four."
    answer_call = adapter.field_messages(signature, [], inputs, {"reasoning": reasoning}, "answer")

    assert [m["role"] for m in reasoning_call] == ["system", "user"]
    assert REASONING_LINE in reasoning_call[0]["content"]
    assert reasoning_call[1]["content"] == "What is 2+2?"
    assert [m["role"] for m in answer_call] == ["system", "user", "assistant", "user"]
    assert answer_call[2]["content"] == reasoning
    assert answer_call[3]["content"] == FINAL_ANSWER_QUESTION
    assert all("[[" not in m["content"] for m in reasoning_call + answer_call)


def test_other_signatures_get_their_instructions_inputs_and_fields_asked_for() -> None:
    class Summarize(dspy.Signature):
        """Summarize for a ten-year-old."""

        text: str = dspy.InputField()
        audience: str = dspy.InputField()
        summary: str = dspy.OutputField()
        title: str = dspy.OutputField(desc="At most five words.")

    adapter = PlainAdapter()
    inputs = {"text": "Bees make honey.", "audience": "kids"}

    first = adapter.field_messages(Summarize, [], inputs, {}, "summary")
    second = adapter.field_messages(Summarize, [], inputs, {"summary": "Bees make honey."}, "title")

    assert "Summarize for a ten-year-old." in first[0]["content"]
    assert first[1]["content"] == "Text: Bees make honey.\n\nAudience: kids\n\nGive the summary."
    assert second[-1]["content"] == "Now give the title. At most five words."


async def test_dspys_own_listener_refuses_the_adapter_and_ours_accepts_it(local_lm: dspy.LM) -> None:
    program = dspy.Predict("question -> answer")

    async def stream_with(listener: StreamListener) -> list[str]:
        stream = dspy.streamify(program, stream_listeners=[listener], is_async_program=True)
        with dspy.context(lm=local_lm, adapter=PlainAdapter()):
            return [
                v.chunk async for v in stream(question="Hi!") if isinstance(v, dspy.streaming.StreamResponse)
            ]

    with pytest.raises(ValueError, match="Unsupported adapter for streaming"):
        await stream_with(StreamListener("answer"))
    listener = make_listener("answer")
    assert isinstance(listener, PlainStreamListener)
    assert "".join(await stream_with(listener)).strip()


@pytest.mark.parametrize("kind", ["predict", "cot"])
async def test_a_small_model_behind_a_server_streams_real_answers(
    kind: str, remote_lm: dspy.LM, stream_question, program_for
) -> None:
    program = program_for(kind)
    fields = list(program.predictors()[0].signature.output_fields)
    for question in QUESTIONS[:2]:
        result = await stream_question(program, remote_lm, PlainAdapter(), question)
        assert result.field_order == fields
        for field_name in fields:
            _assert_real_field(question, field_name, result.prediction[field_name], result.text(field_name))


async def test_the_chat_adapter_fails_on_that_model_and_the_hint_says_plain(
    remote_lm: dspy.LM, stream_question, program_for
) -> None:
    with pytest.raises(AdapterParseError) as caught:
        await stream_question(program_for("predict"), remote_lm, dspy.ChatAdapter(), QUESTIONS[0])

    line = classify(caught.value).message
    assert line is not None and "--adapter plain" in line
    assert "\n" not in line
