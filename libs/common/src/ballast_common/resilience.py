"""Backoff delays with jitter for in-process retry loops (the database's transient
errors, `ballast_common.db.transient`). Calls to external services use
`ballast_common.outbound` instead (tenacity retries, pybreaker circuit breakers).

Full jitter spreads retries of many clients that failed together (a restarted
database, a blue-green switch) over the whole backoff window instead of letting them
retry in lock-step. Ref: https://aws.amazon.com/builders-library/timeouts-retries-and-backoff-with-jitter/
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Literal

Jitter = Literal["full", "equal", "none"]

_default_rng = random.Random()  # noqa: S311 - jitter of retry pauses, not secrets


def backoff_delays(
    *,
    attempts: int | None,
    base: float = 0.05,
    factor: float = 2.0,
    max_delay: float = 2.0,
    jitter: Jitter = "full",
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield the waits between attempts (one fewer than ``attempts``).

    The ``n``-th cap is ``min(max_delay, base * factor**n)``; ``full`` jitter
    draws uniformly from ``[0, cap]``, ``equal`` from ``[cap/2, cap]``, ``none``
    yields the cap itself.

    Args:
        attempts: Total attempts, at least 1; ``None`` yields forever (an outbox
            that must flush eventually).
        base: First cap, in seconds.
        factor: Growth per retry, at least 1.
        max_delay: Upper bound of every delay, in seconds.
        jitter: ``"full"``, ``"equal"`` or ``"none"``.
        rng: Random source (seed one in tests); defaults to a module-level one.

    Yields:
        Delays in seconds, each within ``[0, max_delay]``.

    Raises:
        ValueError: On out-of-range arguments.
    """
    if attempts is not None and attempts < 1:
        raise ValueError("attempts must be at least 1")
    if base < 0 or max_delay < 0 or factor < 1:
        raise ValueError("need base >= 0, max_delay >= 0 and factor >= 1")
    if jitter not in ("full", "equal", "none"):
        raise ValueError(f"unknown jitter {jitter!r}")
    source = rng if rng is not None else _default_rng
    cap = min(base, max_delay)
    produced = 0
    while attempts is None or produced < attempts - 1:
        if jitter == "full":
            delay = source.uniform(0.0, cap)
        elif jitter == "equal":
            delay = cap / 2 + source.uniform(0.0, cap / 2)
        else:
            delay = cap
        # uniform() and cap/2 + x may round a hair past the cap (visible with
        # subnormal caps); the cap is a promise, so clamp to it.
        yield min(max(delay, 0.0), cap)
        produced += 1
        # Grow incrementally and clamp: base * factor**n overflows floats for
        # unbounded retries.
        cap = min(cap * factor, max_delay)
