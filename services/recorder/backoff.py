"""Reconnect delay policy (pure; clock and randomness injected).

Exponential from `base_s`, times `factor` per consecutive failure, capped at `cap_s`, with +-`jitter`
(fractional) so many cameras behind one switch do not reconnect in lock-step. A run that delivered video for
at least `stable_s` counts as a success: the next failure starts again from `base_s`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base_s: float = 0.5
    cap_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    stable_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    rand: Callable[[], float] = random.random  # uniform in [0, 1)
    failures: int = field(default=0, init=False)
    _healthy_since: float | None = field(default=None, init=False)

    def healthy(self) -> None:
        """Video is flowing (call on every fragment; only the first of a run is remembered)."""
        if self._healthy_since is None:
            self._healthy_since = self.clock()

    def next_delay(self) -> float:
        """The run ended: how long to wait before the next attempt."""
        if self._healthy_since is not None and self.clock() - self._healthy_since >= self.stable_s:
            self.failures = 0
        self._healthy_since = None
        raw = min(self.cap_s, self.base_s * self.factor ** min(self.failures, 64))
        self.failures += 1
        spread = 1.0 + self.jitter * (2.0 * self.rand() - 1.0)
        return max(0.0, min(self.cap_s, raw * spread))
