import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ballast_common.resilience import backoff_delays


class TestBackoffDelays:
    @settings(deadline=None, max_examples=300)
    @given(
        attempts=st.integers(min_value=1, max_value=60),
        base=st.floats(min_value=0, max_value=5),
        factor=st.floats(min_value=1, max_value=10),
        max_delay=st.floats(min_value=0, max_value=30),
        jitter=st.sampled_from(["full", "equal", "none"]),
        seed=st.integers(),
    )
    def test_delays_stay_within_caps(
        self,
        attempts: int,
        base: float,
        factor: float,
        max_delay: float,
        jitter: str,
        seed: int,
    ) -> None:
        delays = list(
            backoff_delays(
                attempts=attempts,
                base=base,
                factor=factor,
                max_delay=max_delay,
                jitter=jitter,  # type: ignore[arg-type]
                rng=random.Random(seed),
            )
        )
        assert len(delays) == attempts - 1
        cap = min(base, max_delay)
        for delay in delays:
            assert 0 <= delay <= max_delay
            assert delay <= cap * (1 + 1e-9)
            if jitter == "equal":
                assert delay >= cap / 2 * (1 - 1e-9)
            if jitter == "none":
                assert delay == pytest.approx(cap)
            cap = min(cap * factor, max_delay)

    def test_exponential_growth_without_jitter(self) -> None:
        delays = list(
            backoff_delays(
                attempts=8, base=0.1, factor=2.0, max_delay=2.0, jitter="none"
            )
        )
        assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])

    def test_full_jitter_actually_varies(self) -> None:
        delays = list(
            backoff_delays(attempts=50, base=1.0, max_delay=1.0, rng=random.Random(1))
        )
        assert len(set(delays)) > 40
        assert min(delays) < 0.2 < 0.8 < max(delays)

    def test_unbounded_is_capped_and_does_not_overflow(self) -> None:
        gen = backoff_delays(
            attempts=None, base=1.0, factor=10.0, max_delay=3.0, jitter="none"
        )
        delays = [next(gen) for _ in range(2000)]
        assert delays[-1] == 3.0

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"attempts": 0},
            {"attempts": 3, "base": -1},
            {"attempts": 3, "max_delay": -1},
            {"attempts": 3, "factor": 0.5},
            {"attempts": 3, "jitter": "random"},
        ],
    )
    def test_invalid_arguments(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
            next(backoff_delays(**kwargs))  # type: ignore[arg-type]
