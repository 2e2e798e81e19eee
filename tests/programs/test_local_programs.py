"""The embedded model runs multi-stage programs and multi-output signatures through PlainAdapter."""

from __future__ import annotations

from tests.programs.conftest import SAMPLES, collect
from tui.config import Settings
from tui.models.lm_factory import build_adapter, build_lm
from tui.models.plain_adapter import PlainAdapter
from tui.programs import load_program
from tui.streaming.events import Done, Status, Token
from tui.streaming.runner import StreamJob, StreamRun


def local_run(inputs: dict[str, str], **changes: object) -> StreamRun:
    settings = Settings(model="local", temperature=0.0, max_tokens=12, **changes)
    adapter = build_adapter(settings)
    assert isinstance(adapter, PlainAdapter)
    question = list(inputs.values())[-1]
    return StreamRun(
        StreamJob(question, inputs=inputs),
        settings,
        build_lm(settings),
        adapter,
        program=load_program(settings),
    )


def texts_of(events: list) -> dict[str, str]:
    texts: dict[str, str] = {}
    for event in events:
        if isinstance(event, Token):
            texts[event.field] = texts.get(event.field, "") + event.text
    return texts


def assert_own_words(value: str, streamed: str) -> None:
    assert value.strip() and "[[" not in value
    assert streamed.strip() == value.strip()


async def test_the_embedded_model_runs_a_two_stage_program() -> None:
    run = local_run({"topic": "rivers"}, program=f"{SAMPLES}:SyncTwoStage")
    events = await collect(run)
    done = events[-1]
    assert isinstance(done, Done), done
    texts = texts_of(events)
    assert list(texts) == ["outline", "essay"]
    assert_own_words(done.prediction.essay, texts["essay"])
    stages = [e.message for e in events if isinstance(e, Status) and e.kind == "stage"]
    assert stages == ["▸ outline", "✓ outline", "▸ write", "✓ write"]
    assert run.metrics.cost_usd is None  # no price for the local model, not $0
    # llama.cpp's own counts, both calls summed: the prompts were read, not "in 0"
    assert run.metrics.input_tokens is not None and run.metrics.input_tokens > 20
    assert run.metrics.provider_output_tokens is not None and run.metrics.provider_output_tokens > 0


async def test_the_embedded_model_answers_each_field_of_a_signature_with_its_own_call() -> None:
    run = local_run(
        {"question": "What is the capital of France?"},
        program="predict",
        signature="question -> topic, answer",
    )
    events = await collect(run)
    done = events[-1]
    assert isinstance(done, Done), done
    texts = texts_of(events)
    assert list(texts) == ["topic", "answer"]
    for name in texts:
        assert_own_words(getattr(done.prediction, name), texts[name])
    assert len(run.lm.history) == 2  # one LM call per output field


async def test_a_typed_field_is_read_from_the_small_models_sentence() -> None:
    run = local_run(
        {"question": "What is 2+2?"}, program="predict", signature="question -> answer, confidence: float"
    )
    events = await collect(run)
    done = events[-1]
    assert isinstance(done, Done), done
    assert isinstance(done.prediction.confidence, float)
    assert list(texts_of(events)) == ["answer"]  # the number does not stream
