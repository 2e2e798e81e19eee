"""Test-wide isolation and the loopback OpenAI-compatible server fixtures.

The environment is set here, at import, because pytest imports this file before any test
module, so before DSPy, LiteLLM or platformdirs read it (the server module imports none of them).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.openai_server import OpenAIServer

# LiteLLM otherwise fetches its model cost map at import: a 5 s timeout when offline.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("LITELLM_LOG", "ERROR")

# Tests never read or write the user's real config, data, logs or DSPy cache.
_ISOLATED_HOME = Path(tempfile.mkdtemp(prefix="dspy-stream-tests-"))
atexit.register(shutil.rmtree, _ISOLATED_HOME, ignore_errors=True)
for _name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
    os.environ[_name] = str(_ISOLATED_HOME / _name.lower())
os.environ["DSPY_CACHEDIR"] = str(_ISOLATED_HOME / "dspy_cache")
# Nor the developer's own settings for the app.
for _name in [name for name in os.environ if name.startswith("DSPY_STREAM_")]:
    del os.environ[_name]


@pytest.fixture(scope="session")
def isolated_home() -> Path:
    """The temporary directory that stands in for XDG config/data/state/cache during tests."""
    return _ISOLATED_HOME


@pytest.fixture(scope="session")
def openai_server_session() -> Iterator[OpenAIServer]:
    """One loopback server for the whole session. Tests that use it call ``reset()`` first."""
    with OpenAIServer() as server:
        yield server


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A fresh loopback OpenAI-compatible server: default behaviour, empty script, no requests."""
    with OpenAIServer() as server:
        yield server


@pytest.fixture
def openai_lm_kwargs(openai_server: OpenAIServer) -> dict[str, str]:
    """``dspy.LM`` keyword arguments for ``openai_server``: model, api_base, api_key."""
    return openai_server.lm_kwargs()


@pytest.fixture
def openai_lm(openai_lm_kwargs: dict[str, str]) -> Any:
    """A ``dspy.LM`` on ``openai_server`` with no cache and no DSPy-internal retries."""
    import dspy

    return dspy.LM(**openai_lm_kwargs, cache=False, num_retries=0)
