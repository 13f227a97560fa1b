"""Bootstrap confidence intervals (percentile method), in batches with progress.

The resamples are drawn from one seeded generator in a fixed order, so the result does
not depend on the batch size (progress granularity) — only on the data, the seed and
the number of resamples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ballast_common.jobs.registry import ComputeMode, Statistic

RESAMPLES: dict[str, int] = {"fast": 1_000, "accurate": 10_000}
# Index matrix budget per batch (rows x resamples), bounding memory at ~160 MB.
_BATCH_CELLS = 20_000_000
HISTOGRAM_BINS = 30


@dataclass(frozen=True)
class Interval:
    statistic: str
    estimate: float
    low: float
    high: float
    confidence: float
    n: int
    n_resamples: int
    # The bootstrap distribution for the chart.
    hist_edges: list[float]
    hist_counts: list[int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stat(name: Statistic, sample: npt.NDArray[np.float64], axis: int) -> Any:
    if name == "mean":
        return sample.mean(axis=axis)
    if name == "median":
        return np.median(sample, axis=axis)
    return (
        sample.std(axis=axis, ddof=1)
        if sample.shape[axis] > 1
        else np.zeros(sample.shape[0] if axis == 1 else 1)
    )


def resamples_for(mode: ComputeMode) -> int:
    return RESAMPLES[mode]


def bootstrap_ci(
    values: npt.ArrayLike,
    *,
    statistic: Statistic = "mean",
    confidence: float = 0.95,
    n_resamples: int = 1_000,
    seed: int | None = 0,
    batch: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> Interval:
    """A percentile bootstrap interval of `statistic` over `values` (NaNs dropped).

    Args:
        values: the sample.
        statistic: mean, median or std (ddof=1).
        confidence: e.g. 0.95 for a 95 % interval.
        n_resamples: bootstrap resamples.
        seed: generator seed (same seed, same interval).
        batch: resamples per batch (default: bounded by memory); progress is reported
            after each batch, and the result does not depend on it.
        progress: called with the fraction done; may raise to stop (cancel).

    Raises:
        ValueError: no finite values, or arguments out of range.
    """
    data = np.asarray(values, dtype=np.float64).ravel()
    data = data[np.isfinite(data)]
    n = int(data.size)
    if n == 0:
        raise ValueError("no numeric values")
    if not 0 < confidence < 1 or n_resamples < 1:
        raise ValueError("confidence must be in (0, 1) and n_resamples >= 1")
    size = batch or max(1, min(n_resamples, _BATCH_CELLS // n))
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples, dtype=np.float64)
    done = 0
    while done < n_resamples:
        rows = min(size, n_resamples - done)
        idx = rng.integers(0, n, size=(rows, n))
        stats[done : done + rows] = _stat(statistic, data[idx], axis=1)
        done += rows
        if progress is not None:
            progress(done / n_resamples)
    alpha = 1 - confidence
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    estimate = float(_stat(statistic, data[np.newaxis, :], axis=1)[0])
    counts, edges = np.histogram(stats, bins=HISTOGRAM_BINS)
    return Interval(
        statistic=statistic,
        estimate=estimate,
        low=float(low),
        high=float(high),
        confidence=confidence,
        n=n,
        n_resamples=n_resamples,
        hist_edges=[float(e) for e in edges],
        hist_counts=[int(c) for c in counts],
    )
