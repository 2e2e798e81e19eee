"""Open-loop load: when each question starts, as `vllm bench serve --request-rate` starts requests.

The gaps between starts are drawn from a gamma distribution of shape `burstiness` and mean
1 / rate: shape 1 is a Poisson process, below 1 burstier, above 1 more even. They are drawn
`BLOCK` at a time and scaled so that each block lasts exactly BLOCK / rate: a gamma process
conditioned on its block's length (for shape 1, arrivals uniform within the block), so the
gaps keep their shape while the measured rate of a few hundred starts does not drift by the
+-7% a free Poisson process shows over 200. Start times are planned from the first start, so
a late consumer of the plan does not lower the rate. The seed is fixed (vLLM's default is
too): the same command makes the same schedule.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Protocol

BLOCK = 50
# A start this late re-plans the schedule from now rather than catching up all at once.
LATE_S = 0.25


class Schedule(Protocol):
    """When the next question starts: `wait_turn()` returns at its time."""

    async def wait_turn(self) -> None: ...


class Arrivals:
    def __init__(
        self,
        rate: float,
        burstiness: float = 1.0,
        *,
        seed: int | None = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burstiness <= 0:
            raise ValueError("rate and burstiness must be more than 0")
        self.rate = rate
        self.burstiness = burstiness
        self._rng = random.Random(seed)
        self._clock = clock
        self._next: float | None = None
        self._gaps: list[float] = []

    def gap(self) -> float:
        """Seconds from one start to the next."""
        if not self._gaps:
            drawn = [self._rng.gammavariate(self.burstiness, 1.0) for _ in range(BLOCK)]
            scale = BLOCK / self.rate / sum(drawn)
            self._gaps = [g * scale for g in reversed(drawn)]
        return self._gaps.pop()

    async def wait_turn(self) -> None:
        """Return at the next planned start time (at once for the first, or when already late)."""
        now = self._clock()
        if self._next is None:
            self._next = now
        elif now - self._next > LATE_S:
            self._next = now  # far behind (a loaded machine): start over from now, never in a burst
        delay = self._next - now
        self._next += self.gap()
        if delay > 0:
            await asyncio.sleep(delay)
