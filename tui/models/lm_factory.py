"""From Settings to the `dspy.LM`, adapter and stream listeners one run uses.

Hosted models go through DSPy's own providers; `local` and `local:/path.gguf` through the
in-process engine. Credentials are checked here, before anything is built, so a missing key
is one line naming the variable. Keys themselves are read by DSPy from the environment and
never pass through this module's messages.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dspy
from dspy.streaming import StreamListener
from dspy.utils.exceptions import LMError

from tui.config import Settings
from tui.models.errors import ModelError
from tui.models.local_engine import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    ModelState,
    local_engines,
    watch_model_state,
)
from tui.models.plain_adapter import PlainAdapter, PlainStreamListener
from tui.streaming.events import Status

# Providers and the variables that hold their keys (the first is the one a message names).
PROVIDER_KEYS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "groq": ("GROQ_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY", "TOGETHER_API_KEY"),
    "fireworks_ai": ("FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY"),
    "xai": ("XAI_API_KEY",),
    "cohere": ("COHERE_API_KEY",),
    "cohere_chat": ("COHERE_API_KEY",),
    "perplexity": ("PERPLEXITYAI_API_KEY",),
    "cerebras": ("CEREBRAS_API_KEY",),
    "deepinfra": ("DEEPINFRA_API_KEY",),
    "sambanova": ("SAMBANOVA_API_KEY",),
    "nvidia_nim": ("NVIDIA_NIM_API_KEY",),
    "huggingface": ("HF_TOKEN", "HUGGINGFACE_API_KEY"),
    "replicate": ("REPLICATE_API_KEY",),
}
# Servers on the user's own machine or network: no key.
KEYLESS_PROVIDERS = frozenset(
    {"ollama", "ollama_chat", "lm_studio", "hosted_vllm", "vllm", "llamafile", "openai_like", "xinference"}
)
# Providers whose credentials are more than one variable (cloud accounts, profiles); DSPy checks them.
SELF_AUTHENTICATING_PROVIDERS = frozenset(
    {"azure", "azure_ai", "bedrock", "vertex_ai", "sagemaker", "sagemaker_chat", "watsonx", "databricks"}
)
# What an OpenAI-compatible local server gets for a key; such servers want one but ignore it.
LOCAL_SERVER_KEY = "not-needed"
EXAMPLE_MODELS = "openai/gpt-4o-mini, anthropic/claude-3-5-haiku-latest, ollama_chat/llama3.2 or local"


def check_credentials(model: str, api_base: str | None, environ: Mapping[str, str] | None = None) -> bool:
    """Raise ModelError when `model` cannot be called; True when a placeholder key must be passed.

    The placeholder is for `--api-base` servers (llama.cpp, LM Studio, vLLM) that need some key.
    """
    environ = os.environ if environ is None else environ
    provider, _, name = model.partition("/")
    if not name:
        raise ModelError(f"model {model!r} names no provider: write provider/model, e.g. {EXAMPLE_MODELS}")
    if provider in KEYLESS_PROVIDERS or provider in SELF_AUTHENTICATING_PROVIDERS:
        return False
    if provider not in PROVIDER_KEYS:
        raise ModelError(f"unknown model provider {provider!r} in {model!r}: try {EXAMPLE_MODELS}")
    if any(environ.get(variable) for variable in PROVIDER_KEYS[provider]):
        return False
    if api_base:
        return True
    variable = PROVIDER_KEYS[provider][0]
    raise ModelError(f"{variable} is not set: export it, or pass --api-base for a local server")


def build_lm(settings: Settings) -> dspy.LM:
    """The `dspy.LM` for `settings.model`; raises ModelError with one line when it cannot be built."""
    hide_truncation_warnings()
    if settings.is_local:
        return _build_local_lm(settings)
    needs_placeholder_key = check_credentials(settings.model, settings.api_base)
    client: dict[str, Any] = {}
    if settings.api_base:
        client["api_base"] = settings.api_base
    if needs_placeholder_key:
        client["api_key"] = LOCAL_SERVER_KEY
    try:
        # num_retries=0: the runner retries, with backoff it shows, so DSPy must not retry underneath.
        return dspy.LM(
            settings.model,
            cache=settings.cache,
            num_retries=0,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            **client,
        )
    except (ValueError, TypeError, LMError) as error:
        raise ModelError(f"cannot use model {settings.model!r}: {_first_line(error)}") from None


def _build_local_lm(settings: Settings) -> dspy.LM:
    max_tokens = settings.max_tokens or DEFAULT_MAX_TOKENS
    temperature = settings.temperature if settings.temperature is not None else DEFAULT_TEMPERATURE
    engine, async_engine = local_engines(settings.model, max_tokens=max_tokens, temperature=temperature)
    return dspy.LM(
        f"local/{engine.model_name}",
        engine=engine,
        async_engine=async_engine,
        cache=False,
        num_retries=0,
        max_tokens=max_tokens,
        temperature=temperature,
    )


def build_adapter(settings: Settings) -> dspy.Adapter:
    """chat and json are DSPy's own adapters; plain is for small models (the default for local ones)."""
    adapter = settings.effective_adapter
    if adapter == "plain":
        return PlainAdapter()
    if adapter == "json":
        return dspy.JSONAdapter()
    return dspy.ChatAdapter()


def make_stream_listeners(
    program: dspy.Module, adapter: Settings | dspy.Adapter | None = None
) -> list[StreamListener]:
    """Fresh listeners for every streamable output field of every predictor in `program`.

    Each names its predictor (`predict=`, `predict_name=`) so a field name two predictors share
    is told apart. `allow_reuse`: a predictor called again in the same run (ReAct's steps, a
    loop) streams again; listeners are still made fresh for every attempt (dspy#8425).
    Numbers, lists, Literal and models do not stream: they appear with the Prediction.
    DSPy's listeners refuse adapters they do not know by name, so PlainAdapter gets its own kind.
    """
    from tui.programs.info import streams

    if isinstance(adapter, Settings):
        adapter = build_adapter(adapter)
    kind = PlainStreamListener if isinstance(adapter, PlainAdapter) else StreamListener
    return [
        kind(field_name, predict=predictor, predict_name=name, allow_reuse=True)
        for name, predictor in program.named_predictors()
        for field_name, info in predictor.signature.output_fields.items()
        if streams(info.annotation)
    ]


STATUS_FOR_STATE = {
    ModelState.QUEUED: "queued",
    ModelState.LOADING: "loading model",
    ModelState.GENERATING: "streaming",
}


def status_for_state(state: ModelState) -> Status:
    return Status(STATUS_FOR_STATE[state])


@contextlib.contextmanager
def model_status_updates(on_status: Callable[[Status], None]) -> Iterator[None]:
    """Report the local model's "loading model", "queued" and "streaming" as `Status` events.

    Wrap the consumption of one stream in it; `on_status` runs on the consuming thread (the
    event loop for async programs). Hosted models report nothing through it.
    """
    with watch_model_state(lambda state: on_status(status_for_state(state))):
        yield


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class _TruncationWarningFilter(logging.Filter):
    """DSPy warns on every reply that reaches max_tokens; with short answers by design that is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("LM response was truncated")


_TRUNCATION_FILTER = _TruncationWarningFilter()


def hide_truncation_warnings() -> None:
    """Keep DSPy's "LM response was truncated" warning off the screen (idempotent)."""
    dspy_lm_logger = logging.getLogger("dspy.clients.lm")
    if _TRUNCATION_FILTER not in dspy_lm_logger.filters:
        dspy_lm_logger.addFilter(_TRUNCATION_FILTER)
