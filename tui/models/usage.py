"""Tokens as the provider counted them and their cost, from DSPy's usage tracker and the published prices."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    """None where no price is known (the local model, unknown models): never a made-up $0."""


def prediction_usage(prediction: Any) -> Usage:
    """What `prediction.get_lm_usage()` says, summed over every model the program called."""
    get = getattr(prediction, "get_lm_usage", None)
    usage = get() if callable(get) else None
    if not usage:
        return Usage()
    return usage_of(usage)


def usage_of(by_model: Mapping[str, Mapping[str, Any]]) -> Usage:
    inputs = outputs = 0
    cost: float | None = None
    seen = False
    for model, counts in by_model.items():
        if not isinstance(counts, Mapping):
            continue
        prompt = int(counts.get("prompt_tokens") or 0)
        completion = int(counts.get("completion_tokens") or 0)
        seen = seen or "prompt_tokens" in counts or "completion_tokens" in counts
        inputs += prompt
        outputs += completion
        price = model_cost(model, prompt, completion)
        if price is not None:
            cost = (cost or 0.0) + price
    if not seen:
        return Usage()
    return Usage(inputs, outputs, cost)


def model_cost(model: str, input_tokens: int, output_tokens: int) -> float | None:
    """USD for these tokens at the published price for `model` (LiteLLM's price map, as DSPy
    bundles it); None when there is none (or a price of 0)."""
    prompt_rate, completion_rate = _prices(model)
    if prompt_rate is None or completion_rate is None:
        return None
    total = input_tokens * prompt_rate + output_tokens * completion_rate
    return total if total > 0 else None


@functools.lru_cache(maxsize=64)
def _prices(model: str) -> tuple[float | None, float | None]:
    """USD per input and output token; looked up once a model (a name the map lacks costs 2 ms)."""
    provider, _, name = model.partition("/")
    if provider == "local" or model == "local" or not name:
        return None, None
    try:
        from dspy.clients.model_metadata import model_info, rate

        info = model_info(provider, name)
    except Exception:  # advisory: a price lookup never fails a stream
        return None, None
    return rate(info, "input_cost_per_token"), rate(info, "output_cost_per_token")
