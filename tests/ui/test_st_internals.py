"""The Streamlit internals the UI reads (`ballast_ui.st_internals`), on the installed release.

A Streamlit upgrade that moves or changes one of them fails here, not in a browser.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.runtime.app_session import AppSession
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
from streamlit.runtime.runtime import Runtime, RuntimeConfig
from streamlit.runtime.script_data import ScriptData
from streamlit.runtime.scriptrunner import ScriptRunner
from streamlit.runtime.scriptrunner.script_cache import ScriptCache
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


RACE_SCRIPT = """
import streamlit as st

@st.fragment
def nav():
    n = st.session_state.setdefault("nav", 0)
    st.session_state["nav"] = n + 1
    st.query_params["page"] = f"p{n}"
    st.text(f"nav {n}")

@st.fragment
def poll():
    n = st.session_state.setdefault("poll", 0)
    st.session_state["poll"] = n + 1
    st.text(f"poll {n}")

nav()
poll()
"""


def _sent(session: Any) -> list[str]:
    """The texts drawn and the URLs set, in the order the browser would get them."""
    out = []
    for m in session._browser_queue.flush():
        kind = m.WhichOneof("type")
        if kind == "page_info_changed":
            out.append("?" + m.page_info_changed.query_string)
        elif (
            kind == "delta"
            and m.delta.WhichOneof("type") == "new_element"
            and m.delta.new_element.WhichOneof("type") == "text"
        ):
            out.append(m.delta.new_element.text.body)
    return out


async def _settled(session: Any) -> None:
    """Wait until the session's runner is gone and its posts were handled."""
    for _ in range(500):
        await asyncio.sleep(0.01)
        if session._scriptrunner is None:
            return
    raise AssertionError("the script runner did not finish")


def _race(script: Path) -> list[str]:
    """A navigation fragment's rerun, then a polling fragment's: the second request
    reaches the session after the first run finished on its thread but before the
    session's loop handled that run's output."""

    async def main() -> list[str]:
        uploads = MemoryUploadedFileManager("/upload")
        # The process's runtime (runs clear its media), not started: no server.
        Runtime(
            RuntimeConfig(
                script_path=str(script),
                media_file_storage=MemoryMediaFileStorage("/media"),
                uploaded_file_manager=uploads,
            )
        )
        session = AppSession(
            script_data=ScriptData(str(script)),
            uploaded_file_manager=uploads,
            script_cache=ScriptCache(),
            message_enqueued_callback=None,
            user_info={},
        )
        try:
            session.request_rerun(None)
            await _settled(session)
            first = _sent(session)
            nav, poll = list(session._fragment_storage._fragments)
            session.request_rerun(ClientState(fragment_id=nav))
            # The loop is held: the nav run's output waits in its queue while the
            # poll's rerun request comes in.
            session._scriptrunner._script_thread.join(timeout=10)
            session.request_rerun(ClientState(fragment_id=poll))
            await _settled(session)
            return first + _sent(session)
        finally:
            session.shutdown()
            Runtime._instance = None

    return asyncio.run(main())


def test_a_finished_runs_output_survives_its_runner_being_replaced(
    tmp_path: Path,
) -> None:
    st_internals.keep_output_of_finished_runs()
    script = tmp_path / "race_app.py"
    script.write_text(RACE_SCRIPT)
    assert _race(script) == [
        "?page=p0",
        "nav 0",
        "poll 0",
        "?page=p1",
        "nav 1",
        "poll 1",
    ]


def test_streamlit_alone_still_drops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # When this fails, Streamlit delivers the output itself: the mend can go.
    st_internals.keep_output_of_finished_runs()
    originals = st_internals.ORIGINALS
    monkeypatch.setattr(ScriptRunner, "request_rerun", originals["request_rerun"])
    monkeypatch.setattr(ScriptRunner, "request_stop", originals["request_stop"])
    monkeypatch.setattr(
        AppSession, "_handle_scriptrunner_event_on_event_loop", originals["handle"]
    )
    script = tmp_path / "race_app.py"
    script.write_text(RACE_SCRIPT)
    assert _race(script) == ["?page=p0", "nav 0", "poll 0", "poll 1"]


def test_the_mend_is_installed_once() -> None:
    st_internals.keep_output_of_finished_runs()
    assert st_internals.keep_output_of_finished_runs() is False


def filtered_app() -> None:
    import datetime

    import streamlit as st
    from streamlit.runtime.state.session_state_proxy import get_session_state

    from ballast_ui import st_internals

    for i in range(200):
        st.session_state.setdefault(f"plain{i}", i)
    st.session_state.setdefault("none_text", None)
    st.session_state.setdefault("none_number", None)
    st.text_input("Text", key="text")
    st.text_input("None text", key="none_text")
    st.number_input("None number", key="none_number", value=3)
    st.selectbox("Pick", ["a", "b"], key="pick")
    st.slider("Range", 0, 10, (2, 4), key="range")
    st.date_input("Day", datetime.date(2026, 1, 2), key="day")
    st.checkbox("Check", key="check")
    st.text_input("Keyless")
    element = st.components.v2.component(
        "filtered_probe", js="export default function () {}"
    )
    element(key="probe", data={"n": 1}, on_ping_change=lambda: None)

    safe = get_session_state()
    whole = st_internals.ORIGINALS["filtered_state"].fget(safe)
    view = st_internals.FilteredState(safe)
    assert dict(view) == whole
    assert len(view) == len(whole)
    assert repr(view) == repr(whole)
    for key, value in whole.items():
        assert key in view, key
        assert view[key] == value, key
    for absent in ("nope", "$$ID-123-None", "$$STREAMLIT_INTERNAL_KEY_x", 5):
        assert absent not in view
    # The widgets drawn with a None value in the state show none (what they read
    # filtered_state for), with the view installed or not.
    st.text(
        repr(
            (
                sorted(whole)[:3],
                st.session_state["none_text"],
                st.session_state["none_number"],
                type(st.session_state.to_dict()).__name__,
                len(st.session_state.to_dict()) == len(whole),
            )
        )
    )


@pytest.mark.parametrize("installed", [False, True])
def test_the_lazy_filtered_state_answers_as_streamlits_dict(
    installed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    (_install_lazy if installed else _streamlits_own)(monkeypatch)
    at = AppTest.from_function(filtered_app, default_timeout=20).run()
    assert not at.exception, at.exception
    at.text_input(key="text").input("typed").run()
    assert not at.exception, at.exception
    keys, none_text, none_number, kind, same_len = ast.literal_eval(at.text[0].value)
    assert (none_text, none_number, kind, same_len) == (None, None, "dict", True)
    assert at.text_input(key="none_text").value is None
    assert at.number_input(key="none_number").value is None
    assert keys


def _streamlits_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamlit's own filtered_state for one test, installed view or not."""
    from streamlit.runtime.state import session_state_proxy
    from streamlit.runtime.state.safe_session_state import SafeSessionState

    monkeypatch.setattr(
        SafeSessionState, "filtered_state", st_internals.ORIGINALS["filtered_state"]
    )
    monkeypatch.setattr(
        session_state_proxy.SessionStateProxy,
        "to_dict",
        st_internals.ORIGINALS["to_dict"],
    )
    monkeypatch.delattr(SafeSessionState, st_internals._LAZY, raising=False)


def _install_lazy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Install the view on this process for one test (undone after it)."""
    from streamlit.runtime.state.safe_session_state import SafeSessionState

    _streamlits_own(monkeypatch)
    assert st_internals.lazy_filtered_state() is True
    assert st_internals.lazy_filtered_state() is False
    monkeypatch.setattr(SafeSessionState, st_internals._LAZY, True, raising=False)


def reads_app() -> None:
    import streamlit as st
    from streamlit.runtime.state.session_state import SessionState

    for i in range(200):
        st.session_state.setdefault(f"plain{i}", i)
    SessionState._ballast_reads = 0  # type: ignore[attr-defined]
    st.text_input("Text", key="text")
    st.text(str(SessionState._ballast_reads))  # type: ignore[attr-defined]


@pytest.mark.parametrize("installed", [False, True])
def test_a_widget_reads_its_own_value_not_the_whole_session(
    installed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drawing a text field among 200 values: Streamlit's dict reads them all, the
    view a handful."""
    from streamlit.runtime.state.session_state import SessionState

    (_install_lazy if installed else _streamlits_own)(monkeypatch)
    getitem = SessionState.__getitem__

    def counted(self: SessionState, key: str) -> Any:
        SessionState._ballast_reads += 1  # type: ignore[attr-defined]
        return getitem(self, key)

    monkeypatch.setattr(SessionState, "_ballast_reads", 0, raising=False)
    monkeypatch.setattr(SessionState, "__getitem__", counted)
    at = AppTest.from_function(reads_app, default_timeout=20).run()
    assert not at.exception
    reads = int(at.text[0].value)
    if installed:
        assert reads <= 5
    else:
        assert reads >= 200
