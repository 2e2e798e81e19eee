"""Settings to LM, adapter and listeners: credentials, local models, status, one-line errors."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

import dspy
import pytest
from dspy.streaming import StreamListener
from dspy.utils.exceptions import AdapterParseError, LMUnexpectedError

from tui.config import Settings
from tui.models import ModelError
from tui.models.lm_factory import (
    LOCAL_SERVER_KEY,
    build_adapter,
    build_lm,
    check_credentials,
    make_stream_listeners,
    model_status_updates,
    status_for_state,
)
from tui.models.local_engine import DEFAULT_MAX_TOKENS, AsyncLocalEngine, LocalEngine, ModelState
from tui.models.plain_adapter import PlainAdapter, PlainStreamListener
from tui.streaming.events import Status
from tui.streaming.faults import classify

SECRET = "sk-test-0123456789abcdef-must-never-show"
KEY_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in KEY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize(
    ("model", "variable"),
    [("openai/gpt-4o-mini", "OPENAI_API_KEY"), ("anthropic/claude-3-5-haiku-latest", "ANTHROPIC_API_KEY")],
)
def test_a_missing_key_is_one_line_naming_the_variable(no_keys: None, model: str, variable: str) -> None:
    with pytest.raises(ModelError) as caught:
        build_lm(Settings(model=model))
    assert str(caught.value) == f"{variable} is not set: export it, or pass --api-base for a local server"


@pytest.mark.parametrize(
    ("model", "variable"),
    [("moonshot/kimi-k2", "MOONSHOT_API_KEY"), ("dashscope/qwen-max", "DASHSCOPE_API_KEY")],
)
def test_providers_come_from_dspy_and_litellm_not_a_table_of_our_own(
    monkeypatch: pytest.MonkeyPatch, model: str, variable: str
) -> None:
    # Providers the old hand-written table refused: DSPy's router (moonshot) or LiteLLM (dashscope)
    # knows them and the variables they need.
    monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ModelError) as caught:
        check_credentials(model, None)
    assert variable in str(caught.value).partition(" is not set")[0]
    monkeypatch.setenv(variable, SECRET)
    assert check_credentials(model, None) is False
    assert build_lm(Settings(model=model)).model == model


def test_a_server_address_is_not_a_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_API_BASE", raising=False)
    assert check_credentials("ollama_chat/llama3.2", None) is False


def test_a_key_in_the_environment_is_enough(no_keys: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", SECRET)
    assert check_credentials("gemini/gemini-2.0-flash", None) is False


def test_an_api_base_without_a_key_gets_a_placeholder_key(no_keys: None) -> None:
    lm = build_lm(Settings(model="openai/smollm2", api_base="http://127.0.0.1:9/v1"))
    assert lm.kwargs["api_key"] == LOCAL_SERVER_KEY
    assert lm.kwargs["api_base"] == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize(
    "model", ["ollama_chat/llama3.2", "lm_studio/qwen2.5", "bedrock/anthropic.claude-v2"]
)
def test_local_servers_and_cloud_accounts_need_no_key_variable(no_keys: None, model: str) -> None:
    assert check_credentials(model, None) is False


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("nosuchprovider/model-x", "unknown model provider 'nosuchprovider'"),
        ("gpt-4o-mini", "names no provider"),
    ],
)
def test_an_unknown_model_string_is_one_line(model: str, says: str) -> None:
    with pytest.raises(ModelError, match=says) as caught:
        build_lm(Settings(model=model))
    assert "\n" not in str(caught.value)


def test_a_hosted_lm_leaves_retries_to_the_runner_and_never_shows_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    settings = Settings(model="openai/gpt-4o-mini", max_tokens=100, temperature=0.5, cache=True)

    lm = build_lm(settings)

    assert lm.num_retries == 0
    assert lm.cache is True
    assert lm.kwargs["max_tokens"] == 100 and lm.kwargs["temperature"] == 0.5
    for shown in (repr(lm), str(lm.dump_state()), repr(settings), str(lm.kwargs)):
        assert SECRET not in shown


def test_a_hosted_model_that_dspy_refuses_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with pytest.raises(ModelError, match="cannot use model 'openai/gpt-5'") as caught:
        build_lm(Settings(model="openai/gpt-5", temperature=0.0, max_tokens=100))
    assert "\n" not in str(caught.value) and SECRET not in str(caught.value)


def test_the_local_lm_runs_the_embedded_model_in_process_without_cache() -> None:
    lm = build_lm(Settings())

    assert isinstance(lm.engine, LocalEngine)
    assert isinstance(lm._async_engine_spec, AsyncLocalEngine)
    assert lm.cache is False and lm.num_retries == 0
    assert lm.kwargs["max_tokens"] == DEFAULT_MAX_TOKENS
    assert build_lm(Settings(max_tokens=64)).kwargs["max_tokens"] == 64


def test_local_models_share_one_loaded_model() -> None:
    first, second = build_lm(Settings()), build_lm(Settings(max_tokens=32))
    assert first.engine.model is second.engine.model


def test_another_gguf_file_is_a_local_model(embedded_gguf: Path, tmp_path: Path) -> None:
    copy = _hard_copy(embedded_gguf, tmp_path)
    lm = build_lm(Settings(model=f"local:{copy}"))
    assert lm.engine.model.path == copy.resolve()
    with pytest.raises(ModelError, match="does not exist"):
        build_lm(Settings(model=f"local:{tmp_path / 'missing.gguf'}"))


@pytest.mark.parametrize(
    ("settings", "adapter"),
    [
        (Settings(), PlainAdapter),
        (Settings(model="local:/any.gguf"), PlainAdapter),
        (Settings(model="openai/gpt-4o-mini"), dspy.ChatAdapter),
        (Settings(model="openai/gpt-4o-mini", adapter="plain"), PlainAdapter),
        (Settings(model="openai/gpt-4o-mini", adapter="json"), dspy.JSONAdapter),
        (Settings(adapter="chat"), dspy.ChatAdapter),
    ],
)
def test_the_adapter_defaults_to_plain_for_local_models_and_chat_otherwise(
    settings: Settings, adapter: type
) -> None:
    assert type(build_adapter(settings)) is adapter


def test_listeners_are_fresh_one_per_output_field_and_fit_the_adapter() -> None:
    cot = dspy.ChainOfThought("question -> answer")

    plain = make_stream_listeners(cot, Settings())
    again = make_stream_listeners(cot, PlainAdapter())
    chat = make_stream_listeners(dspy.Predict("question -> answer"), dspy.ChatAdapter())

    assert [listener.signature_field_name for listener in plain] == ["reasoning", "answer"]
    assert all(isinstance(listener, PlainStreamListener) for listener in plain + again)
    assert not set(map(id, plain)) & set(map(id, again))
    assert [type(listener) for listener in chat] == [StreamListener]
    assert chat[0].signature_field_name == "answer"


def test_model_states_map_to_status_events() -> None:
    assert status_for_state(ModelState.LOADING) == Status("loading model")
    assert status_for_state(ModelState.QUEUED) == Status("queued")
    assert status_for_state(ModelState.GENERATING) == Status("streaming")


async def test_a_fresh_model_shows_loading_and_a_second_question_shows_queued(
    embedded_gguf: Path, tmp_path: Path
) -> None:
    # A second file is a second model, so it has not been loaded by any other test.
    settings = Settings(model=f"local:{_hard_copy(embedded_gguf, tmp_path)}", temperature=0.0, max_tokens=8)
    lm, adapter = build_lm(settings), build_adapter(settings)

    async def ask(question: str) -> list[Status]:
        statuses: list[Status] = []
        program = dspy.Predict("question -> answer")
        stream = dspy.streamify(
            program, stream_listeners=make_stream_listeners(program, adapter), is_async_program=True
        )
        with dspy.context(lm=lm, adapter=adapter), model_status_updates(statuses.append):
            async for _ in stream(question=question):
                pass
        return statuses

    first, second = await asyncio.gather(asyncio.create_task(ask("Hi!")), asyncio.create_task(ask("Hello!")))

    assert first == [Status("loading model"), Status("streaming")]
    assert second == [Status("queued", ahead=1), Status("streaming")]  # one stream before it
    lm.engine.model.close()


async def test_settings_for_a_small_model_behind_a_server_stream_real_answers(
    no_keys: None, llama_server: str, stream_question
) -> None:
    settings = Settings(
        model="openai/smollm2", api_base=llama_server, adapter="plain", temperature=0.0, max_tokens=24
    )
    program = dspy.Predict("question -> answer")

    result = await stream_question(program, build_lm(settings), build_adapter(settings), "Who wrote Hamlet?")

    assert result.prediction.answer.strip()
    assert result.text("answer") == result.prediction.answer


def test_failures_become_one_line() -> None:
    signature = dspy.Signature("question -> answer")
    parse_error = AdapterParseError(adapter_name="ChatAdapter", signature=signature, lm_response="Paris.")
    plain_error = AdapterParseError(adapter_name="PlainAdapter", signature=signature, lm_response="Paris.")
    wrapped = LMUnexpectedError("engine failed")
    wrapped.__cause__ = ModelError("cannot load model file x.gguf: bad magic")

    assert "--adapter plain" in classify(parse_error).message
    assert "--adapter plain" not in classify(plain_error).message
    assert "--adapter plain" not in classify(ValueError("other")).message
    assert classify(wrapped).message == "cannot load model file x.gguf: bad magic"
    assert not classify(wrapped).retryable
    assert classify(ValueError("other")).message == "ValueError: other"


def test_truncated_replies_are_not_reported_to_the_screen(
    local_lm: dspy.LM, caplog: pytest.LogCaptureFixture
) -> None:
    build_lm(Settings(max_tokens=4))
    with (
        caplog.at_level(logging.WARNING),
        dspy.context(lm=local_lm.copy(max_tokens=4), adapter=PlainAdapter()),
    ):
        prediction = dspy.Predict("question -> answer")(question="Why is the sky blue?")
    assert prediction.answer.strip()
    assert not [record for record in caplog.records if "truncated" in record.getMessage()]


def _hard_copy(source: Path, folder: Path) -> Path:
    """The model under another name without copying 98 MB where the filesystem allows."""
    target = folder / "copy-of-smollm2.gguf"
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target
