"""The Streamlit internals the UI reads (`ballast_ui.st_internals`), on the installed release.

A Streamlit upgrade that moves or changes one of them fails here, not in a browser.
"""

from __future__ import annotations

import ast

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from ballast_ui import st_internals


def internals_app() -> None:
    import streamlit as st

    from ballast_ui.st_internals import current_run, is_history_navigation

    seen = st.session_state.setdefault("seen", [])
    run, fragment = current_run()
    # Held, so no later run's object can take the address `id` reports.
    st.session_state.setdefault("runs", []).append(run)
    assert run is current_run()[0]  # one run, one identity
    seen.append(("app", id(run), fragment, is_history_navigation()))

    @st.fragment
    def part() -> None:
        inner, frag = current_run()
        seen.append(("fragment", id(inner), frag, is_history_navigation()))

    part()
    st.text(repr(seen))


def _seen(at: AppTest) -> list[tuple[str, int, str | None, bool]]:
    return list(ast.literal_eval(at.text[-1].value))


def test_runs_and_fragments_are_told_apart() -> None:
    at = AppTest.from_function(internals_app, default_timeout=10).run()
    assert not at.exception
    app1, frag1 = _seen(at)
    assert app1[0] == "app"
    assert app1[2] is None
    assert frag1[0] == "fragment"
    assert frag1[2]
    assert not app1[3]
    assert not frag1[3]
    at.run()
    app2, frag2 = _seen(at)[2:]
    assert app2[2] is None
    assert frag2[2] == frag1[2]
    # Each whole-app run is a new run.
    assert app2[1] != app1[1]
    # A fragment drawn by a whole-app run belongs to that run.
    assert frag1[1] == app1[1]
    assert frag2[1] == app2[1]


def test_outside_a_run_there_is_none() -> None:
    assert st_internals.current_run() == (None, None)
    assert st_internals.is_history_navigation() is False


def test_the_installed_streamlit_is_a_tested_release() -> None:
    # Upgrading Streamlit: check the functions of st_internals on the new release,
    # then add it to TESTED_VERSIONS.
    assert st_internals.untested_version() is None, st.__version__
    assert st_internals.streamlit_version() in st_internals.TESTED_VERSIONS


def test_an_untested_release_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(st_internals.st, "__version__", "9.1.0")
    message = st_internals.untested_version()
    assert message is not None
    assert "9.1.0" in message
    assert "1.67" in message
    logged: list[tuple[str, dict[str, str]]] = []

    class Log:
        def warning(self, event: str, **kw: str) -> None:
            logged.append((event, kw))

    monkeypatch.setattr(st_internals, "get_logger", lambda _name: Log())
    assert st_internals.warn_if_untested() == message
    assert logged == [("streamlit_untested", {"message": message})]
