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

# Providers whose credentials may live in account files or instance roles, which LiteLLM's
# environment check cannot see: their SDKs find them, so missing variables are not an error.
ACCOUNT_PROVIDERS = frozenset(
    {"bedrock", "bedrock_converse", "sagemaker", "sagemaker_chat", "vertex_ai", "vertex_ai_beta", "watsonx"}
)
# What an OpenAI-compatible local server gets for a key; such servers want one but ignore it.
LOCAL_SERVER_KEY = "not-needed"
EXAMPLE_MODELS = "openai/gpt-4o-mini, anthropic/claude-3-5-haiku-latest, ollama_chat/llama3.2 or local"
_BASE_SUFFIXES = ("_API_BASE", "_BASE_URL", "_ENDPOINT", "_URL")


def _litellm() -> Any:
    import litellm

    litellm.suppress_debug_info = True  # else unknown providers print a banner on stdout
    return litellm


def check_credentials(model: str, api_base: str | None, environ: Mapping[str, str] | None = None) -> bool:
    """Raise ModelError when `model` cannot be called; True when a placeholder key must be passed.

    DSPy's native router knows the providers it calls itself and the variable each one's key
    is read from; for every other provider the call goes through LiteLLM, so LiteLLM's own
    knowledge decides (`litellm.provider_list`, `litellm.validate_environment`). LiteLLM takes
    seconds to import, so it is asked only for providers the native router does not know.
    The placeholder is for `--api-base` servers (llama.cpp, LM Studio, vLLM) that need some key.
    """
    environ = os.environ if environ is None else environ
    name = model.partition("/")[2]
    if not name:
        raise ModelError(f"model {model!r} names no provider: write provider/model, e.g. {EXAMPLE_MODELS}")
    native = _native_route(model)
    missing = _native_missing(native, environ) if native is not None else _litellm_missing(model, environ)
    if not missing:
        return False
    if api_base:
        return True
    raise ModelError(f"{missing[0]} is not set: export it, or pass --api-base for a local server")


def _native_route(model: str) -> Any:
    """DSPy's native resolution of `model` (provider, key variable), or None when LiteLLM serves it."""
    try:
        from dspy.clients.engines.lm15_engine import LM15Engine
        from dspy.lm15 import RouterConfig

        return LM15Engine(RouterConfig(env={}), model_type="chat").resolve(model)
    except Exception:  # UnknownModelError and friends: not a provider DSPy calls natively
        return None


def _native_missing(route: Any, environ: Mapping[str, str]) -> list[str]:
    """The key variables of a natively routed provider when none of them is set (any one will do)."""
    if getattr(route, "credential_policy", "key") != "key" or getattr(route, "placeholder_key", None):
        return []
    keys = _native_key_variables(route)
    if not keys or any(environ.get(key) for key in keys):
        return []
    return [" or ".join(keys)]


def _native_key_variables(route: Any) -> tuple[str, ...]:
    try:
        from dspy._vendor.lm15 import access

        for policy in vars(access).values():
            if isinstance(policy, access.AccessPolicy) and policy.provider == route.provider:
                return tuple(policy.env_keys)
    except Exception:  # DSPy's internals moved: the route still names its main variable
        pass
    return (route.env_key,) if getattr(route, "env_key", None) else ()


def _litellm_missing(model: str, environ: Mapping[str, str]) -> list[str]:
    provider = model.partition("/")[0]
    litellm = _litellm()
    if provider not in {str(getattr(p, "value", p)) for p in litellm.provider_list}:
        raise ModelError(f"unknown model provider {provider!r} in {model!r}: try {EXAMPLE_MODELS}")
    if provider in ACCOUNT_PROVIDERS:
        return []
    try:
        report = litellm.validate_environment(model)
    except Exception:  # a provider LiteLLM lists but cannot check: let the call itself tell
        return []
    missing = [v for v in report.get("missing_keys") or [] if not environ.get(v)]
    # A server address is what --api-base gives; LiteLLM's local providers default to localhost.
    return sorted(
        (v for v in missing if not v.endswith(_BASE_SUFFIXES)),
        key=lambda v: not any(word in v for word in ("KEY", "TOKEN")),
    )


class ThreadSafeLM(dspy.LM):
    """A `dspy.LM` that a program may also call from threads of its own (`dspy.Parallel`, a
    ThreadPoolExecutor): there DSPy's streaming cannot reach the event loop ("Not running inside
    an AnyIO worker thread", dspy#9154) and the call failed, so it is made without streaming and
    its text arrives with its prediction. Calls from the program's own thread stream as ever."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if dspy.settings.send_stream is not None and not _can_reach_the_stream():
            with dspy.context(send_stream=None):
                return super().__call__(*args, **kwargs)
        return super().__call__(*args, **kwargs)


def _can_reach_the_stream() -> bool:
    """In a thread anyio started (where a sync `forward` runs), so DSPy can send it chunks."""
    import anyio.from_thread

    try:
        anyio.from_thread.check_cancelled()
    except RuntimeError:
        return False
    return True


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
        return ThreadSafeLM(
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
    return ThreadSafeLM(
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
    with watch_model_state(
        lambda state: on_status(status_for_state(state)),
        on_queue=lambda ahead: on_status(Status("queued", ahead=ahead)),
    ):
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
