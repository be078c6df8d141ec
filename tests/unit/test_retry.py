"""RetryPolicy: exponential backoff, capped, with bounded jitter."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasktrail.errors import InvalidArguments
from tasktrail.retry import RetryPolicy

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_defaults_mean_no_retry() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 1
    assert policy.next_run_at(1, policy.max_attempts, NOW) is None


def test_without_jitter_the_delay_doubles_per_attempt() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=1.5, factor=2, max_delay=1000, jitter=0)
    assert [policy.delay(n) for n in range(1, 7)] == [1.5, 3, 6, 12, 24, 48]


def test_attempt_zero_or_negative_waits_the_base_delay() -> None:
    policy = RetryPolicy(base_delay=2, jitter=0)
    assert policy.delay(0) == 2
    assert policy.delay(-5) == 2


def test_delay_is_capped() -> None:
    policy = RetryPolicy(base_delay=10, factor=3, max_delay=100, jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 50)] == [10, 30, 90, 100, 100]


def test_factor_one_is_a_constant_delay() -> None:
    policy = RetryPolicy(base_delay=7, factor=1, jitter=0)
    assert {policy.delay(n) for n in range(1, 20)} == {7}


def test_huge_attempt_numbers_do_not_overflow() -> None:
    policy = RetryPolicy(base_delay=1, factor=10, max_delay=60, jitter=0)
    assert policy.delay(10**9) == 60


def test_huge_factor_does_not_overflow() -> None:
    policy = RetryPolicy(base_delay=1, factor=1e6, max_delay=60, jitter=0)
    assert policy.delay(64) == 60


def test_jitter_with_a_seeded_random_is_reproducible() -> None:
    policy = RetryPolicy(base_delay=10, jitter=0.5)
    first = [policy.delay(3, random.Random(42)) for _ in range(3)]
    again = [policy.delay(3, random.Random(42)) for _ in range(3)]
    assert first == again
    spread = {policy.delay(3, rng) for rng in [random.Random(seed) for seed in range(20)]}
    assert len(spread) > 1  # jitter actually varies the delay


def test_jitter_spreads_over_the_whole_range() -> None:
    policy = RetryPolicy(base_delay=100, factor=1, jitter=0.25)
    rng = random.Random(7)
    delays = [policy.delay(1, rng) for _ in range(2000)]
    assert min(delays) >= 75
    assert max(delays) <= 125
    # Both halves of the range are used, not just one side of the base delay.
    assert min(delays) < 80
    assert max(delays) > 120


@given(
    base=st.floats(min_value=0, max_value=1e4),
    factor=st.floats(min_value=1, max_value=1e9),
    cap=st.floats(min_value=0, max_value=1e6),
    jitter=st.floats(min_value=0, max_value=1),
    attempt=st.integers(min_value=-3, max_value=10_000),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_stays_within_jitter_bounds_of_the_capped_backoff(
    base: float, factor: float, cap: float, jitter: float, attempt: int, seed: int
) -> None:
    policy = RetryPolicy(base_delay=base, factor=factor, max_delay=cap, jitter=jitter)
    delay = policy.delay(attempt, random.Random(seed))
    exponent = max(0, attempt - 1)
    try:
        expected = min(cap, base * factor ** min(exponent, 64))
    except OverflowError:
        expected = cap if base > 0 else 0.0
    assert math.isfinite(delay)
    assert delay >= 0
    assert expected * (1 - jitter) * (1 - 1e-9) <= delay <= expected * (1 + jitter) * (1 + 1e-9)


@given(
    attempt=st.integers(min_value=1, max_value=40),
    base=st.floats(min_value=0.001, max_value=100),
    factor=st.floats(min_value=1, max_value=10),
)
def test_without_jitter_delays_never_shrink(attempt: int, base: float, factor: float) -> None:
    policy = RetryPolicy(base_delay=base, factor=factor, max_delay=1e6, jitter=0)
    assert policy.delay(attempt + 1) >= policy.delay(attempt)


def test_next_run_at_is_now_plus_delay_while_attempts_are_left() -> None:
    policy = RetryPolicy(max_attempts=4, base_delay=5, factor=2, jitter=0)
    assert policy.next_run_at(1, 4, NOW) == NOW + timedelta(seconds=5)
    assert policy.next_run_at(2, 4, NOW) == NOW + timedelta(seconds=10)
    assert policy.next_run_at(3, 4, NOW) == NOW + timedelta(seconds=20)


@pytest.mark.parametrize(("attempt", "max_attempts"), [(4, 4), (5, 4), (1, 1), (3, 2)])
def test_next_run_at_is_none_when_attempts_are_exhausted(attempt: int, max_attempts: int) -> None:
    policy = RetryPolicy(max_attempts=10, jitter=0)
    assert policy.next_run_at(attempt, max_attempts, NOW) is None


def test_next_run_at_uses_the_jobs_max_attempts_not_the_policys() -> None:
    # The job row keeps the policy it was enqueued with.
    policy = RetryPolicy(max_attempts=1, base_delay=1, jitter=0)
    assert policy.next_run_at(1, 3, NOW) == NOW + timedelta(seconds=1)


def test_next_run_at_with_a_seeded_random_is_within_bounds() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=60, jitter=0.1)
    run_at = policy.next_run_at(1, 3, NOW, random.Random(1))
    assert run_at is not None
    assert NOW + timedelta(seconds=54) <= run_at <= NOW + timedelta(seconds=66)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "retries must be 0 or more, got -1"),
        ({"max_attempts": -4}, "retries must be 0 or more, got -5"),
        ({"base_delay": -1}, "must not be negative"),
        ({"max_delay": -0.5}, "must not be negative"),
        ({"factor": 0.5}, "factor must be at least 1"),
        ({"jitter": -0.1}, "jitter must be between 0 and 1"),
        ({"jitter": 1.5}, "jitter must be between 0 and 1"),
        ({"jitter": math.nan}, "jitter must be between 0 and 1"),
        ({"base_delay": math.nan}, "must not be negative"),
        ({"max_delay": math.nan}, "must not be negative"),
        ({"factor": math.nan}, "factor must be at least 1"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidArguments, match=message):
        RetryPolicy(**options)  # type: ignore[arg-type]


def test_boundary_settings_are_accepted() -> None:
    policy = RetryPolicy(max_attempts=1, base_delay=0, factor=1, max_delay=0, jitter=1)
    assert policy.delay(5, random.Random(0)) == 0
