"""How soon, and whether at all, a job may be started again.

The back-off is tenacity's `wait_exponential_jitter` (initial · 2^(n-1) + jitter, capped), where
n counts the restarts inside the last `window_s`; at most `max_restarts` fit in that window
(torchrun's `--max-restarts`, with a window so a week-long run is not capped for good). When
the window is full the circuit breaker opens: `next_delay()` says None and the caller gives up.
Incident restarts and restarts after the job exited with an error draw on the same budget.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable

from tenacity import RetryCallState, wait_exponential_jitter

from faultwarden.daemon.config import Restart


def backoff(initial_s: float, max_s: float) -> wait_exponential_jitter:
    """Exponential back-off whose jitter scales with the first delay (0 stays 0, for tests)."""
    try:
        return wait_exponential_jitter(multiplier=initial_s, max=max_s, jitter=initial_s)
    except TypeError:  # tenacity < 9 names the first delay `initial`
        return wait_exponential_jitter(initial=initial_s, max=max_s, jitter=initial_s)


class RestartBudget:
    def __init__(self, settings: Restart, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.clock = clock
        self.wait = backoff(settings.backoff_initial_s, settings.backoff_max_s)
        self.history: deque[float] = deque()
        self.total = 0

    @property
    def enabled(self) -> bool:
        return self.settings.max_restarts > 0

    def in_window(self) -> int:
        horizon = self.clock() - self.settings.window_s
        while self.history and self.history[0] <= horizon:
            self.history.popleft()
        return len(self.history)

    def next_delay(self) -> float | None:
        """Take one restart from the budget: the back-off to wait first, or None (circuit open)."""
        used = self.in_window()
        if used >= self.settings.max_restarts:
            return None
        state = RetryCallState(None, None, (), {})
        state.attempt_number = used + 1
        self.history.append(self.clock())
        self.total += 1
        return float(self.wait(state))

    def describe(self) -> str:
        return f"{self.settings.max_restarts} restarts within {self.settings.window_s:g} s"

