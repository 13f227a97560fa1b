"""The hidden preload of every element kind's code (app._preload) is drawn by every run
in a session's first PRELOAD_S seconds, and by none after."""

from __future__ import annotations

import time
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from ballast_ui import app

CLOCK = [1000.0]


class _Clock:
    """The app module's `time`, with a monotonic clock the test sets."""

    @staticmethod
    def monotonic() -> float:
        return CLOCK[0]

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def preload_app() -> None:
    import streamlit as st

    from ballast_ui import app

    due = app._preload_due()
    if due:
        app._preload()
    st.text(f"preload={due}")


def test_the_preload_is_drawn_in_a_sessions_first_seconds_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app, "time", _Clock())
    at = AppTest.from_function(preload_app, default_timeout=10)
    drawn = []
    for now in (1000.0, 1000.0 + app.PRELOAD_S - 0.5, 1000.0 + app.PRELOAD_S):
        CLOCK[0] = now
        at.run()
        assert not at.exception
        keys = {w.key for w in at.text_area} | {w.key for w in at.checkbox}
        drawn.append((at.text[-1].value, sorted(keys)))
    shown = ["b-preload-area", "b-preload-check"]
    assert drawn == [
        ("preload=True", shown),
        ("preload=True", shown),
        ("preload=False", []),
    ]
    # A new session starts its own clock.
    fresh = AppTest.from_function(preload_app, default_timeout=10)
    fresh.run()
    assert fresh.text[-1].value == "preload=True"
