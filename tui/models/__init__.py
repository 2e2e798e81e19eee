"""Building the language model a run uses: hosted providers, keys from the environment, the local engine.

`ModelError` is imported eagerly; the rest on first use, so importing this package for the error
type does not import DSPy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tui.models.errors import ModelError

if TYPE_CHECKING:
    from tui.models.lm_factory import (
        build_adapter,
        build_lm,
        check_credentials,
        make_stream_listeners,
        model_status_updates,
        status_for_state,
    )
    from tui.models.local_engine import ModelState, embedded_model_path, shared_local_model, watch_model_state
    from tui.models.plain_adapter import PlainAdapter, make_listener

_LAZY = {
    "build_adapter": "tui.models.lm_factory",
    "build_lm": "tui.models.lm_factory",
    "check_credentials": "tui.models.lm_factory",
    "make_stream_listeners": "tui.models.lm_factory",
    "model_status_updates": "tui.models.lm_factory",
    "status_for_state": "tui.models.lm_factory",
    "ModelState": "tui.models.local_engine",
    "embedded_model_path": "tui.models.local_engine",
    "shared_local_model": "tui.models.local_engine",
    "watch_model_state": "tui.models.local_engine",
    "PlainAdapter": "tui.models.plain_adapter",
    "make_listener": "tui.models.plain_adapter",
}

__all__ = [
    "ModelError",
    "ModelState",
    "PlainAdapter",
    "build_adapter",
    "build_lm",
    "check_credentials",
    "embedded_model_path",
    "make_listener",
    "make_stream_listeners",
    "model_status_updates",
    "shared_local_model",
    "status_for_state",
    "watch_model_state",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
