"""Real DSPy programs, streamed through the runner against the loopback server."""

from __future__ import annotations

import json

from tests.programs.conftest import SAMPLES, TOOLS, collect, program_run
from tests.support.openai_server import REACT_TOOL_STEPS, Behaviour
from tui.streaming.events import Done, Status, Token


def streamed(events: list) -> dict[str, str]:
    texts: dict[str, str] = {}
    for event in events:
        if isinstance(event, Token):
            texts[event.field] = texts.get(event.field, "") + event.text
    return texts


async def test_a_two_stage_module_streams_every_field_of_both_stages(openai_server):
    openai_server.default = Behaviour(tokens=6)
    run = program_run(
        openai_server,
        {"context": "Rust is a language.", "question": "What is Rust?"},
        program=f"{SAMPLES}:DraftThenPolish",
    )
    events = await collect(run)
    done = events[-1]
    assert isinstance(done, Done)
    texts = streamed(events)
    # `answer` is in both stages, so each is named by its predictor.
    assert list(texts) == ["reasoning", "draft.answer", "polish.answer"]
    assert texts["polish.answer"].strip() == done.prediction.answer
    assert isinstance(done.prediction.confidence, float)
    assert "confidence" not in texts  # a float does not stream
    stages = [e.message for e in events if isinstance(e, Status) and e.kind == "stage"]
    assert stages == ["▸ draft", "✓ draft", "▸ polish", "✓ polish"]
    assert len(openai_server.completions) == 2
    assert run.metrics.ttfo is not None and run.metrics.ttft is not None
    assert run.metrics.ttfo > run.metrics.ttft


async def test_a_sync_forward_runs_in_a_thread_and_streams(openai_server):
    openai_server.default = Behaviour(tokens=5)
    run = program_run(openai_server, {"topic": "rivers"}, program=f"{SAMPLES}:SyncTwoStage")
    events = await collect(run)
    assert isinstance(events[-1], Done)
    texts = streamed(events)
    assert list(texts) == ["outline", "essay"]
    assert texts["essay"].strip() == events[-1].prediction.essay


async def test_typed_outputs_parse_and_only_text_streams(openai_server):
    openai_server.default = Behaviour(tokens=4)
    run = program_run(openai_server, {"text": "I love it"}, program=f"{SAMPLES}:typed_program")
    events = await collect(run)
    done = events[-1]
    assert isinstance(done, Done), events[-1]
    prediction = done.prediction
    assert prediction.mood == "happy"
    assert isinstance(prediction.tags, list) and isinstance(prediction.score, float)
    assert prediction.verdict.score == 3
    assert streamed(events) == {"summary": streamed(events)["summary"]}
    assert streamed(events)["summary"].strip() == prediction.summary


async def test_react_calls_two_tools_in_order_then_answers(openai_server):
    openai_server.default = Behaviour(tokens=4)
    run = program_run(openai_server, {"question": "Weather?"}, program=f"{SAMPLES}:agent")
    events = await collect(run)
    done = events[-1]
    assert isinstance(done, Done)
    tools = [e.message for e in events if isinstance(e, Status) and e.kind == "tool"]
    assert tools == [
        '→ weather({"city": "dspy stream"})',
        "← sunny in dspy stream",
        '→ add({"a": 3, "b": 3})',
        "← 6",
    ]
    assert run.tool_calls == ['weather({"city": "dspy stream"})', 'add({"a": 3, "b": 3})']
    texts = streamed(events)
    assert texts["answer"].strip() == done.prediction.answer
    # One thought per step: the tool steps and the finish.
    assert texts["next_thought"].count("\n\n") == REACT_TOOL_STEPS
    assert len(openai_server.completions) == REACT_TOOL_STEPS + 2  # steps, finish, extract


async def test_react_built_in_takes_every_public_function_of_the_tools_file(openai_server):
    run = program_run(openai_server, {"question": "Rust?"}, program="react", tools=str(TOOLS))
    events = await collect(run)
    assert isinstance(events[-1], Done)
    calls = [c.split("(")[0] for c in run.tool_calls]
    assert calls == ["lookup", "multiply"]


async def test_a_signature_with_several_outputs_streams_each(openai_server):
    openai_server.default = Behaviour(tokens=3)
    run = program_run(
        openai_server,
        {"context": "c", "question": "q"},
        program="cot",
        signature="context, question -> title, answer, confidence: float",
        instructions="Answer from the context.",
    )
    events = await collect(run)
    done = events[-1]
    assert isinstance(done, Done)
    texts = streamed(events)
    assert list(texts) == ["reasoning", "title", "answer"]
    for name in texts:
        assert texts[name].strip() == getattr(done.prediction, name)
    assert "Answer from the context." in json.dumps(openai_server.completions[-1].json)


async def test_usage_is_what_the_server_counted(openai_server):
    openai_server.default = Behaviour(tokens=7)
    run = program_run(openai_server, {"context": "c", "question": "q"}, program=f"{SAMPLES}:DraftThenPolish")
    events = await collect(run)
    assert isinstance(events[-1], Done)
    requests = openai_server.completions
    prompt = sum(openai_server._usage(r.json, r.tokens_sent)["prompt_tokens"] for r in requests)
    completion = sum(r.tokens_sent for r in requests)
    assert run.metrics.input_tokens == prompt
    assert run.metrics.provider_output_tokens == completion
    # test-model has no price in LiteLLM: no cost rather than $0.
    assert run.metrics.cost_usd is None


async def test_a_known_model_has_a_cost(openai_server):
    run = program_run(openai_server, {"question": "q"}, model="openai/gpt-4o-mini")
    run.lm = __import__("tests.streaming.conftest", fromlist=["server_lm"]).server_lm(
        openai_server, "openai/gpt-4o-mini"
    )
    events = await collect(run)
    assert isinstance(events[-1], Done)
    assert run.metrics.cost_usd is not None and run.metrics.cost_usd > 0


async def test_a_refine_wrapper_streams_its_inner_module(openai_server):
    run = program_run(openai_server, {"question": "q"}, program=f"{SAMPLES}:refined")
    events = await collect(run)
    done = events[-1]
    assert isinstance(done, Done)
    texts = streamed(events)
    assert list(texts) == ["reasoning", "answer"]
    assert texts["answer"].strip() == done.prediction.answer


async def test_a_predictor_made_inside_forward_is_delivered_whole(openai_server):
    run = program_run(openai_server, {"question": "q"}, program=f"{SAMPLES}:MadeInForward")
    events = await collect(run)
    done = events[-1]
    assert isinstance(done, Done) and not done.cache_hit
    assert streamed(events) == {"answer": done.prediction.answer}


async def test_typed_values_are_json_values_in_the_record(openai_server):
    from tui.report import prediction_json

    run = program_run(openai_server, {"text": "I love it"}, program=f"{SAMPLES}:typed_program")
    events = await collect(run)
    assert isinstance(events[-1], Done)
    values = prediction_json(events[-1].prediction)
    assert values["verdict"] == {"label": "dspy stream", "score": 3}
    assert isinstance(values["tags"], list) and isinstance(values["score"], float)
    json.dumps(values)


async def test_stages_run_side_by_side_end_under_their_own_names(openai_server):
    # cons streams far longer than pros, so pros ends while cons is still streaming.
    openai_server.default = Behaviour(tokens=3, tokens_per_s=200, fields={"cons": "long " * 40})
    run = program_run(openai_server, {"topic": "tea"}, program=f"{SAMPLES}:SideBySide")
    events = await collect(run)
    assert isinstance(events[-1], Done)
    stages = [e.message for e in events if isinstance(e, Status) and e.kind == "stage"]
    assert sorted(stages[:4]) == sorted(["▸ pros", "▸ cons", "✓ pros", "✓ cons"])
    assert stages[4:] == ["▸ verdict", "✓ verdict"]
    assert set(streamed(events)) == {"pros", "cons", "verdict"}
    for stage in ("pros", "cons"):
        # One stack of stages would end the wrong one first: its tokens would follow its end.
        ended = events.index(Status(f"✓ {stage}", "stage"))
        assert not any(isinstance(e, Token) and e.field == stage for e in events[ended:])


async def test_a_forward_that_returns_a_dict_ends_with_a_prediction(openai_server):
    run = program_run(openai_server, {"question": "q"}, program=f"{SAMPLES}:ReturnsDict", timeout=30.0)
    events = await collect(run)
    done = events[-1]
    assert isinstance(done, Done), done
    assert done.prediction.source == "notes"
    assert streamed(events)["answer"].strip() == done.prediction.answer
    assert run.metrics.attempts == 1  # no stall, no retry
