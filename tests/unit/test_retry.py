"""RetryPolicy as a table: (attempts, settings, error) → expected delay."""

from __future__ import annotations

import random
from typing import Any

import pytest

from connectors.base import RateLimited
from monitor.retry import RetryPolicy


class Transient(Exception):
    pass


class Permanent(Exception):
    pass


EXACT: dict[str, Any] = {"jitter": 0.0}


@pytest.mark.parametrize(
    ("attempts", "settings", "error", "expected"),
    [
        # exponential: base * factor ** (attempts - 1)
        (1, EXACT, Transient(), 5.0),
        (2, EXACT, Transient(), 10.0),
        (3, EXACT, Transient(), 20.0),
        (7, EXACT, Transient(), 320.0),
        (2, {**EXACT, "base": 1.0, "factor": 3.0}, Transient(), 3.0),
        (4, {**EXACT, "base": 2.0, "factor": 1.0}, Transient(), 2.0),
        # capped
        (5, {**EXACT, "cap": 60.0}, Transient(), 60.0),
        (10_000, {**EXACT, "max_attempts": None, "cap": 90.0}, Transient(), 90.0),
        # max_attempts counts the attempts made, the failed one included
        (8, EXACT, Transient(), None),
        (9, EXACT, Transient(), None),
        (1, {**EXACT, "max_attempts": 1}, Transient(), None),
        (50, {**EXACT, "max_attempts": None, "cap": 10.0}, Transient(), 10.0),
        # only the listed error types
        (1, {**EXACT, "retry_on": (Transient,)}, Permanent(), None),
        (1, {**EXACT, "retry_on": (Transient,)}, Transient(), 5.0),
        (1, {**EXACT, "retry_on": (LookupError,)}, KeyError("k"), 5.0),
        (1, EXACT, KeyboardInterrupt(), None),
        # the platform's retry_after wins: beyond cap, past max_attempts, outside retry_on
        (1, EXACT, RateLimited(retry_after=42.0), 42.0),
        (1, {**EXACT, "cap": 10.0}, RateLimited(retry_after=900.0), 900.0),
        (8, EXACT, RateLimited(retry_after=30.0), 30.0),
        (1, {**EXACT, "retry_on": (Transient,)}, RateLimited(retry_after=7.0), 7.0),
        (1, EXACT, RateLimited(retry_after=-3.0), 0.0),
        (1, {"jitter": 0.5}, RateLimited(retry_after=60.0), 60.0),
        # a retry_after that is not a usable number is ignored
        (1, EXACT, RateLimited(retry_after=float("nan")), 5.0),
        (1, EXACT, RateLimited(retry_after=float("inf")), 5.0),
    ],
)
def test_next_delay_table(
    attempts: int, settings: dict[str, Any], error: BaseException, expected: float | None
) -> None:
    assert RetryPolicy(**settings).next_delay(attempts, error) == expected


def test_retry_after_attribute_on_any_error_type() -> None:
    error = Permanent("slow down")
    error.retry_after = 12  # type: ignore[attr-defined]
    assert RetryPolicy(retry_on=(Transient,)).next_delay(3, error) == 12.0


@pytest.mark.parametrize("attempts", [1, 2, 3, 4, 5, 6, 7])
def test_jitter_stays_within_fraction(attempts: int) -> None:
    policy = RetryPolicy(jitter=0.1)
    exact = RetryPolicy(jitter=0.0).next_delay(attempts, Transient())
    assert exact is not None
    rng = random.Random(attempts)
    for _ in range(200):
        delay = policy.next_delay(attempts, Transient(), rng=rng)
        assert delay is not None
        assert exact * 0.9 <= delay <= exact * 1.1


def test_jitter_is_deterministic_with_a_seeded_rng() -> None:
    policy = RetryPolicy()
    first = [policy.next_delay(n, Transient(), rng=random.Random(7)) for n in range(1, 8)]
    again = [policy.next_delay(n, Transient(), rng=random.Random(7)) for n in range(1, 8)]
    assert first == again
    assert len(set(first)) == len(first)


def test_jitter_actually_spreads() -> None:
    rng = random.Random(1)
    delays = {RetryPolicy().next_delay(3, Transient(), rng=rng) for _ in range(20)}
    assert len(delays) > 1


def test_jitter_never_exceeds_cap() -> None:
    policy = RetryPolicy(cap=100.0, jitter=0.5)
    rng = random.Random(3)
    delays = [policy.next_delay(8 - 1, Transient(), rng=rng) for _ in range(200)]
    assert all(d is not None and 50.0 <= d <= 100.0 for d in delays)


@pytest.mark.parametrize(
    "settings",
    [
        {"base": -1.0},
        {"cap": -1.0},
        {"factor": 0.5},
        {"max_attempts": 0},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"base": float("nan")},
    ],
)
def test_invalid_settings_are_rejected(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**settings)


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy().next_delay(0, Transient())


def test_policy_is_a_frozen_value() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.base = 1.0  # type: ignore[misc]
    assert policy == RetryPolicy()
