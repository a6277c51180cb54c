"""RetryPolicy: (attempts, error) → delay in seconds, or None to give up.

One value object serves polls, actions and supervised tasks alike (STYLE rule 3).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with a cap and jitter, for the listed error types only.

    ``attempts`` counts the attempts made so far, the one that just failed included, so the
    first retry is asked for with ``attempts=1`` and waits ``base`` seconds. ``None`` means
    give up: an action becomes ``gave_up`` and pages a human.

    A platform's own wait wins over everything else: an error with a numeric ``retry_after``
    attribute (``connectors.base.RateLimited``) gets exactly that delay, even beyond ``cap``,
    whatever ``attempts`` is and whatever ``retry_on`` lists. Being told to slow down is not a
    failure of ours, so it does not use up attempts. Whoever counts attempts decides whether a
    rate-limited try counts towards them.
    """

    base: float = 5.0
    factor: float = 2.0
    cap: float = 3600.0
    max_attempts: int | None = 8
    jitter: float = 0.1
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if not (self.base >= 0 and self.cap >= 0):
            raise ValueError("RetryPolicy: base and cap must be ≥ 0")
        if not self.factor >= 1:
            raise ValueError("RetryPolicy: factor must be ≥ 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("RetryPolicy: max_attempts must be ≥ 1, or None for no limit")
        if not 0 <= self.jitter < 1:
            raise ValueError("RetryPolicy: jitter must be in [0, 1)")

    def next_delay(
        self, attempts: int, error: BaseException, *, rng: random.Random | None = None
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if attempts < 1:
            raise ValueError(f"attempts counts tries made so far and must be ≥ 1, not {attempts}")
        platform_wait = _retry_after(error)
        if platform_wait is not None:
            return platform_wait
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return None
        if not isinstance(error, self.retry_on):
            return None
        return self._jittered(self._backoff(attempts), rng)

    def _backoff(self, attempts: int) -> float:
        try:
            return min(self.cap, self.base * self.factor ** (attempts - 1))
        except OverflowError:
            return self.cap

    def _jittered(self, delay: float, rng: random.Random | None) -> float:
        """Spread retries by ± ``jitter`` of the delay, never past ``cap``."""
        if not self.jitter:
            return delay
        spread = (rng or _RNG).uniform(-self.jitter, self.jitter)
        return min(self.cap, delay * (1 + spread))


_RNG = random.Random()


def _retry_after(error: BaseException) -> float | None:
    value = getattr(error, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    return max(float(value), 0.0)
