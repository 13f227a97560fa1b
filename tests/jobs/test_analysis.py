"""Property tests of the bootstrap computation (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ballast_jobs.analysis import bootstrap_ci

samples = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=60
)
statistics = st.sampled_from(["mean", "median", "std"])
seeds = st.integers(min_value=0, max_value=2**32 - 1)
FAST = settings(max_examples=60, deadline=None)


def close(a: float, b: float, scale: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, scale)


@FAST
@given(samples, statistics, seeds, st.floats(min_value=0.6, max_value=0.99))
def test_interval_is_ordered_and_within_the_data(
    xs: list[float], stat: str, seed: int, conf: float
) -> None:
    ci = bootstrap_ci(xs, statistic=stat, confidence=conf, n_resamples=200, seed=seed)  # type: ignore[arg-type]
    assert ci.low <= ci.high
    assert ci.n == len(xs)
    assert sum(ci.hist_counts) == 200
    if stat != "std":
        # A mean or median of resampled data lies within the data's range.
        span = max(xs) - min(xs)
        assert min(xs) - 1e-9 * max(1, span) <= ci.low
        assert ci.high <= max(xs) + 1e-9 * max(1, span)
    else:
        assert ci.low >= 0


@FAST
@given(samples, statistics, seeds, st.integers(min_value=1, max_value=97))
def test_result_does_not_depend_on_the_batch_size(
    xs: list[float], stat: str, seed: int, batch: int
) -> None:
    whole = bootstrap_ci(xs, statistic=stat, n_resamples=150, seed=seed)  # type: ignore[arg-type]
    parts = bootstrap_ci(xs, statistic=stat, n_resamples=150, seed=seed, batch=batch)  # type: ignore[arg-type]
    assert (parts.low, parts.high, parts.estimate) == (
        whole.low,
        whole.high,
        whole.estimate,
    )


@FAST
@given(samples, seeds, st.floats(min_value=-1e3, max_value=1e3))
def test_mean_interval_shifts_with_the_data(
    xs: list[float], seed: int, shift: float
) -> None:
    base = bootstrap_ci(xs, n_resamples=100, seed=seed)
    moved = bootstrap_ci([x + shift for x in xs], n_resamples=100, seed=seed)
    scale = max(abs(x) for x in xs) + abs(shift)
    assert close(moved.low, base.low + shift, scale * 10)
    assert close(moved.high, base.high + shift, scale * 10)


@FAST
@given(samples, seeds)
def test_wider_confidence_contains_narrower(xs: list[float], seed: int) -> None:
    narrow = bootstrap_ci(xs, confidence=0.8, n_resamples=200, seed=seed)
    wide = bootstrap_ci(xs, confidence=0.99, n_resamples=200, seed=seed)
    assert wide.low <= narrow.low <= narrow.high <= wide.high


@FAST
@given(st.floats(min_value=-1e6, max_value=1e6), st.integers(1, 40), statistics)
def test_constant_data_gives_a_point(value: float, n: int, stat: str) -> None:
    ci = bootstrap_ci([value] * n, statistic=stat, n_resamples=50)  # type: ignore[arg-type]
    expected = 0.0 if stat == "std" else value
    assert close(ci.low, expected, abs(value))
    assert close(ci.high, expected, abs(value))


def test_interval_covers_the_true_mean_about_as_often_as_promised() -> None:
    rng = np.random.default_rng(7)
    hits = 0
    for trial in range(200):
        sample = rng.normal(10.0, 2.0, size=80)
        ci = bootstrap_ci(sample, confidence=0.9, n_resamples=400, seed=trial)
        hits += ci.low <= 10.0 <= ci.high
    # 90 % nominal; the percentile bootstrap undercovers slightly at n=80.
    assert 0.82 <= hits / 200 <= 0.96


def test_progress_is_reported_per_batch_and_can_stop_the_run() -> None:
    seen: list[float] = []
    bootstrap_ci(np.arange(10.0), n_resamples=100, batch=25, progress=seen.append)
    assert seen == [0.25, 0.5, 0.75, 1.0]

    def stop(fraction: float) -> None:
        if fraction >= 0.5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        bootstrap_ci(np.arange(10.0), n_resamples=100, batch=25, progress=stop)


def test_nan_is_dropped_and_empty_is_refused() -> None:
    assert bootstrap_ci([1.0, float("nan"), 3.0], n_resamples=10).n == 2
    with pytest.raises(ValueError, match="no numeric values"):
        bootstrap_ci([float("nan")], n_resamples=10)
