"""Retry policy: when a failed attempt runs again. Pure functions, no I/O."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from .errors import InvalidArguments

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter.

    The delay before attempt ``n + 1`` (after ``n`` failed attempts) is
    ``min(max_delay, base_delay * factor ** (n - 1))``, then scaled by a random factor in
    ``[1 - jitter, 1 + jitter]`` so that jobs that failed together do not retry together.

    Attributes:
        max_attempts: attempts in all, the first included (``retries + 1``).
        base_delay: seconds before the first retry.
        factor: growth of the delay per attempt.
        max_delay: cap on the delay, in seconds.
        jitter: relative spread of the delay, 0 to 1.
    """

    max_attempts: int = 1
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 3600.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InvalidArguments(f"retries must be 0 or more, got {self.max_attempts - 1}")
        # Written as "not >=" so that NaN is refused too.
        if not (self.base_delay >= 0 and self.max_delay >= 0):
            raise InvalidArguments("retry delays must not be negative")
        if not self.factor >= 1:
            raise InvalidArguments(f"retry backoff factor must be at least 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise InvalidArguments(f"retry jitter must be between 0 and 1, got {self.jitter}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = max(0, attempt - 1)
        # Cap the exponent so a large attempt count cannot overflow the float; a huge
        # factor still can, and then the delay is simply the cap.
        try:
            raw = self.base_delay * self.factor ** min(exponent, 64)
        except OverflowError:
            raw = math.inf if self.base_delay > 0 else 0.0
        capped = min(self.max_delay, raw)
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return max(0.0, capped * spread)

    def next_run_at(
        self, attempt: int, max_attempts: int, now: datetime, rng: random.Random | None = None
    ) -> datetime | None:
        """When to run again after failed attempt ``attempt``, or ``None`` if none left.

        ``max_attempts`` comes from the job row (set at enqueue), so a job keeps the
        policy it was enqueued with even if the task's code changed since.
        """
        if attempt >= max_attempts:
            return None
        return now + timedelta(seconds=self.delay(attempt, rng))
