"""Fixtures of every ui test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ui.fakes import OPEN


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Close the api clients the test's app sessions made (`fakes.tracked_http`)."""
    yield
    while OPEN:
        OPEN.pop().close()
