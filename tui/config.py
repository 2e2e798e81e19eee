"""Settings: one validated object, built from defaults < config file < environment < flags.

Every default lives here. A bad value raises `ConfigError` with one line that names
the setting, the value and where it came from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ENV_PREFIX = "DSPY_STREAM_"
PROGRAMS = ("predict", "cot", "react")  # built-ins; a file.py:NAME or module:NAME also works
ADAPTERS = ("chat", "json", "plain")
MODES = ("simple", "concurrent", "aggregate", "recovery", "demo")
LOCAL_MODEL = "local"


class ConfigError(ValueError):
    """A setting that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Settings:
    model: str = LOCAL_MODEL
    api_base: str | None = None
    program: str = "predict"
    signature: str | None = None  # a DSPy signature string for the built-in programs
    instructions: str | None = None  # the signature's docstring-style instruction
    load: str | None = None  # saved state (Module.save) to load into the program
    allow_pickle: bool = False  # a .pkl state or a whole saved program runs code when loaded
    tools: str | None = None  # a Python file whose public functions are react's tools
    # Values for the program's input fields, as `--input NAME=VALUE` gives them (`@file` reads one).
    inputs: tuple[tuple[str, str], ...] = ()
    adapter: str | None = None  # None: chat for hosted models, plain for local ones
    buffer_size: int = 100
    max_retries: int = 3
    retry_delay: float = 2.0
    max_retry_wait: float = 30.0
    timeout: float = 60.0
    concurrency: int = 8
    # Processes DSPy runs in; None: one per usable core; 0: in this process (debugging).
    workers: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    cache: bool = False
    mode: str | None = None
    fault_rate: float = 0.3
    repeat: int = 1
    slo: str | None = None
    # Open loop: questions start as a Poisson process at this many a second (None: closed loop,
    # a question starts as a stream ends); `burstiness` is the gamma shape, as vLLM's.
    request_rate: float | None = None
    burstiness: float = 1.0
    # Where values came from, for error messages: {"buffer_size": "flag --buffer-size"}.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_local(self) -> bool:
        return self.model == LOCAL_MODEL or self.model.startswith(LOCAL_MODEL + ":")

    @property
    def effective_adapter(self) -> str:
        if self.adapter:
            return self.adapter
        return "plain" if self.is_local else "chat"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def public_dict(self) -> dict[str, Any]:
        """The settings as reports, transcripts and the history keep them: keys are never in
        them (they come from the environment), and credentials in `api_base` are dropped."""
        saved = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sources"}
        if self.api_base:
            parts = urlsplit(self.api_base)
            host = parts.hostname or ""
            netloc = f"{host}:{parts.port}" if parts.port else host
            saved["api_base"] = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        return saved


def _source(sources: Mapping[str, str], name: str) -> str:
    return sources.get(name, "default")


def _coerce(name: str, raw: Any, source: str) -> Any:
    """Turn a raw value (TOML value, env string or flag) into the field's type."""
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if raw is None:
        return None
    if name == "inputs":
        return _coerce_inputs(raw, source)
    try:
        if kind in ("int", "int | None"):
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if kind in ("float", "float | None"):
            if isinstance(raw, bool):
                raise ValueError
            number = float(raw)
            if not math.isfinite(number):
                raise ConfigError(f"{name}={raw!r} ({source}): expected a finite number, not {raw}")
            return number
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return str(raw)
    except ConfigError:
        raise
    except (TypeError, ValueError):
        expected = {"int": "a whole number", "float": "a number", "bool": "true or false"}
        word = expected.get(kind.split(" ")[0], "text")
        raise ConfigError(f"{name}={raw!r} ({source}): expected {word}") from None


def _coerce_inputs(raw: Any, source: str) -> tuple[tuple[str, str], ...]:
    """A TOML table (`inputs = {question = "..."}`), a JSON object (the environment), or
    NAME=VALUE pairs (flags)."""
    if isinstance(raw, str):
        import json

        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(
                f'inputs ({source}): expected a JSON object like {{"question": "..."}}'
            ) from None
    if isinstance(raw, Mapping):
        pairs = list(raw.items())
    elif isinstance(raw, list | tuple) and all(isinstance(p, list | tuple) and len(p) == 2 for p in raw):
        pairs = list(raw)
    else:
        raise ConfigError(f"inputs ({source}): expected a table of input field = value")
    for name, value in pairs:
        if not isinstance(name, str) or not name.isidentifier() or not isinstance(value, str):
            raise ConfigError(f"inputs ({source}): {name!r} = {value!r}: expected field name = text")
    return tuple((name, value) for name, value in pairs)


def _check(settings: Settings) -> None:
    def bad(name: str, why: str) -> ConfigError:
        value = getattr(settings, name)
        return ConfigError(f"{name}={value!r} ({_source(settings.sources, name)}): {why}")

    if not settings.model.strip():
        raise bad("model", "give a model such as openai/gpt-4o-mini, or 'local'")
    if not settings.program.strip():
        raise bad("program", f"choose one of {', '.join(PROGRAMS)}, or give path/file.py:NAME")
    if settings.adapter is not None and settings.adapter not in ADAPTERS:
        raise bad("adapter", f"choose one of {', '.join(ADAPTERS)}")
    if settings.mode is not None and settings.mode not in MODES:
        raise bad("mode", f"choose one of {', '.join(MODES)}")
    if settings.buffer_size < 1:
        raise bad("buffer_size", "must be at least 1")
    if settings.max_retries < 0:
        raise bad("max_retries", "must be 0 or more")
    if settings.retry_delay < 0:
        raise bad("retry_delay", "must be 0 or more seconds")
    if settings.max_retry_wait < 0:
        raise bad("max_retry_wait", "must be 0 or more seconds")
    if settings.timeout <= 0:
        raise bad("timeout", "must be more than 0 seconds")
    if settings.workers is not None and not 0 <= settings.workers <= 256:
        raise bad("workers", "must be 0 (in this process) to 256")
    if settings.concurrency < 1:
        raise bad("concurrency", "must be at least 1")
    if settings.max_tokens is not None and settings.max_tokens < 1:
        raise bad("max_tokens", "must be at least 1")
    if not 0 <= settings.fault_rate <= 1:
        raise bad("fault_rate", "must be between 0 and 1")
    if settings.temperature is not None and not 0 <= settings.temperature <= 2:
        raise bad("temperature", "must be between 0 and 2")
    for f in fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise bad(f.name, "must be a finite number")
    if settings.request_rate is not None and settings.request_rate <= 0:
        raise bad("request_rate", "must be more than 0 questions a second")
    if settings.burstiness <= 0:
        raise bad("burstiness", "must be more than 0 (1 is a Poisson process)")
    if settings.repeat < 1:
        raise bad("repeat", "must be at least 1")
    if settings.api_base is not None and not settings.api_base.startswith(("http://", "https://")):
        raise bad("api_base", "must start with http:// or https://")
    if settings.api_base is not None and "@" in urlsplit(settings.api_base).netloc:
        # DSPy's client took `user:password@` for part of the host name; LiteLLM's refuses them.
        raise bad(
            "api_base",
            "a user and password in the address are sent by neither DSPy's nor LiteLLM's client:"
            " give the server's key in the provider's key variable (OPENAI_API_KEY, ...) instead",
        )


SETTING_NAMES = tuple(f.name for f in fields(Settings) if f.name != "sources")


def default_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("dspy-stream")) / "config.toml"


def read_config_file(path: Path, *, required: bool) -> dict[str, Any]:
    """The settings table of a TOML file; a missing default file is simply empty."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} cannot be read: not UTF-8 text") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    unknown = sorted(set(data) - set(SETTING_NAMES))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting {unknown[0]!r}")
    return data


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Layer defaults < config file < DSPY_STREAM_* environment < flags, then validate.

    `flags` holds only the flags the user gave (None means not given).
    """
    environ = os.environ if environ is None else environ
    path = config_path if config_path is not None else default_config_path()
    layers: list[tuple[str, Mapping[str, Any]]] = [
        (f"config file {path}", read_config_file(path, required=config_path is not None)),
        (
            "environment",
            {
                name: environ[ENV_PREFIX + name.upper()]
                for name in SETTING_NAMES
                if ENV_PREFIX + name.upper() in environ
            },
        ),
        ("flag", {k: v for k, v in (flags or {}).items() if v is not None}),
    ]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer, raw_values in layers:
        for name, raw in raw_values.items():
            if name not in SETTING_NAMES:
                continue
            if layer == "environment":
                source = f"environment {ENV_PREFIX}{name.upper()}"
            elif layer == "flag":
                source = f"flag --{name.replace('_', '-')}"
            else:
                source = layer
            value = _coerce(name, raw, source)
            if name == "inputs" and name in values:  # input fields layer one by one
                value = tuple((dict(values[name]) | dict(value)).items())
            values[name] = value
            sources[name] = source
    settings = Settings(**values, sources=sources)
    _check(settings)
    return settings
