"""Controlled forms: dirty markers, undo/redo, reset, validation, save, conflicts."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from ballast_ui.i18n import BLANK


def form_app() -> None:
    from typing import Any

    import streamlit as st

    from ballast_common.errors import ConflictError
    from ballast_ui.forms import (
        SaveResult,
        conflict_view,
        dirty_fields,
        field_note,
        form_toolbar,
        use_form,
        validate,
    )
    from ballast_ui.widgets import s_number, s_text
    from tests.ui.fakes import install_ctx

    install_ctx()
    server = st.session_state.setdefault(
        "server", {"data": {"name": "A", "budget": 1.0}, "version": 1}
    )

    def saver(data: dict[str, Any], expected: int, force: bool) -> SaveResult:
        if expected != server["version"] and not force:
            raise ConflictError(
                current={**server["data"], "version": server["version"]}, attempted=data
            )
        server["data"] = dict(data)
        server["version"] += 1
        return SaveResult(dict(data), server["version"])

    validators = {"name": lambda v: None if v else "Required."}
    form = use_form("f", ["name", "budget"], server["data"], server["version"])

    def close() -> None:
        st.session_state["closed"] = st.session_state.get("closed", 0) + 1

    form_toolbar(form, saver, validators=validators, on_saved=close)
    conflict_view(form, saver, on_saved=close)
    errors = validate(form, validators)
    s_text("Name", "f.name")
    st.caption(field_note(form, "name", errors))
    s_number("Budget", "f.budget", default=0.0)
    st.caption(field_note(form, "budget", errors))
    st.text(f"dirty={dirty_fields(form)} version={form.version} msg={form.message}")


def make() -> AppTest:
    return AppTest.from_function(form_app, default_timeout=10)


def status(at: AppTest) -> str:
    return at.text[0].value


def button(at: AppTest, name: str):  # type: ignore[no-untyped-def]
    return at.button(key=f"f::{name}")


def test_dirty_markers_per_field_and_form() -> None:
    at = make().run()
    assert status(at).startswith("dirty=[] version=1")
    at.text_input(key="f.name").input("B").run()
    assert status(at).startswith("dirty=['name']")
    assert "modified" in at.caption[0].value
    assert at.caption[1].value == BLANK  # an empty line that keeps its height
    assert "1 unsaved" in at.markdown[0].value


def test_undo_redo_over_form_history() -> None:
    at = make().run()
    at.text_input(key="f.name").input("B").run()
    at.number_input(key="f.budget").set_value(5.0).run()
    button(at, "undo").click().run()
    assert at.number_input(key="f.budget").value == 1.0
    assert at.text_input(key="f.name").value == "B"
    button(at, "undo").click().run()
    assert at.text_input(key="f.name").value == "A"
    button(at, "redo").click().run()
    button(at, "redo").click().run()
    assert at.text_input(key="f.name").value == "B"
    assert at.number_input(key="f.budget").value == 5.0


def test_reset_returns_to_saved() -> None:
    at = make().run()
    at.text_input(key="f.name").input("B").run()
    button(at, "reset").click().run()
    assert at.text_input(key="f.name").value == "A"
    assert status(at).startswith("dirty=[]")


def test_validation_blocks_save_inline() -> None:
    at = make().run()
    at.text_input(key="f.name").input("").run()
    assert "Required." in at.caption[0].value
    button(at, "save").click().run()
    assert "version=1" in status(at)
    assert "fix the marked fields" in status(at)


def test_apply_saves_and_clears_dirty() -> None:
    at = make().run()
    at.text_input(key="f.name").input("B").run()
    button(at, "apply").click().run()
    assert status(at).startswith("dirty=[] version=2 msg=Applied.")


def test_conflict_keep_mine_or_take_theirs() -> None:
    at = make().run()
    # Someone else saves version 2 underneath.
    at.session_state["server"] = {
        "data": {"name": "Theirs", "budget": 9.0},
        "version": 2,
    }
    at.text_input(key="f.name").input("Mine").run()
    button(at, "apply").click().run()
    assert "Someone else saved" in status(at)
    assert at.radio(key="f::pick::name").value == "mine"
    at.radio(key="f::pick::budget").set_value("theirs")
    at.button(key="f::resolve").click().run()
    assert not at.exception
    assert at.text_input(key="f.name").value == "Mine"
    assert at.number_input(key="f.budget").value == 9.0
    assert at.session_state["server"]["data"] == {"name": "Mine", "budget": 9.0}
    assert "version=3" in status(at)


def test_stale_echo_after_undo_is_dropped() -> None:
    """The browser reporting a widget's pre-undo value once more changes nothing.

    Seen in Chromium: select A, B, C; Undo (B); the select echoed C; a second Undo
    then showed C instead of A.
    """
    at = make().run()
    at.text_input(key="f.name").input("B").run()
    at.text_input(key="f.name").input("C").run()
    button(at, "undo").click().run()
    assert at.text_input(key="f.name").value == "B"
    # The echo: the widget reports C again right after the undo pushed B into it.
    at.text_input(key="f.name").input("C").run()
    assert at.text_input(key="f.name").value == "B"
    button(at, "undo").click().run()
    assert at.text_input(key="f.name").value == "A"
    assert status(at).startswith("dirty=[]")
    # A real change later on is taken as usual.
    at.text_input(key="f.name").input("C").run()
    assert at.text_input(key="f.name").value == "C"


def test_untouched_fields_are_no_conflict() -> None:
    """Seen in Chromium: "milestones: theirs None vs mine []" though nobody touched
    milestones (the stored form lacked the key, the page showed its empty default)."""
    from ballast_ui.forms import conflicting_fields

    fields = ["name", "budget", "milestones", "tags"]
    base = {"name": "A", "budget": 1.0, "milestones": None, "tags": ["x"]}
    theirs = {"name": "Theirs", "budget": 9.0, "tags": ["x"]}
    mine = {"name": "Mine", "budget": 1.0, "milestones": [], "tags": ["x", "y"]}
    # name: both changed it differently; budget: only they changed it, and mine still
    # holds the old value, so both versions are offered; tags: only I changed it.
    assert conflicting_fields(fields, theirs, mine, base) == ["name", "budget"]
    # The same change on both sides is no conflict either.
    assert (
        conflicting_fields(["name"], {"name": "B"}, {"name": "B"}, {"name": "A"}) == []
    )
    # A real change from empty is one.
    assert conflicting_fields(["m"], {"m": [1]}, {"m": []}, {"m": None}) == ["m"]


def test_resolving_a_save_conflict_finishes_the_save() -> None:
    """Save closes the form; resolving the conflict a Save met closes it too, and the
    conflict choices are gone once saved. Resolving one an Apply met keeps it open."""
    at = make().run()
    at.session_state["server"] = {
        "data": {"name": "Theirs", "budget": 9.0},
        "version": 2,
    }
    at.text_input(key="f.name").input("Mine").run()
    button(at, "save").click().run()
    assert "Someone else saved" in status(at)
    assert "closed" not in at.session_state  # the Save did not happen: still open
    at.button(key="f::mine").click().run()
    assert not at.exception
    assert at.session_state["closed"] == 1
    assert at.session_state["server"]["data"] == {"name": "Mine", "budget": 1.0}
    assert status(at).startswith("dirty=[] version=3 msg=Saved.")
    assert "f::mine" not in [b.key for b in at.button]
    # The same conflict met by an Apply: resolved, the form stays open.
    at.session_state["server"] = {
        "data": {"name": "Other", "budget": 9.0},
        "version": 4,
    }
    at.text_input(key="f.name").input("Mine again").run()
    button(at, "apply").click().run()
    assert "Someone else saved" in status(at)
    at.button(key="f::mine").click().run()
    assert at.session_state["closed"] == 1
    assert status(at).startswith("dirty=[] version=5 msg=Applied.")
    assert "f::mine" not in [b.key for b in at.button]


def test_toolbar_states_for_the_browser() -> None:
    """The browser draws the toolbar's buttons at once from what the run tells it:
    undo/redo steps left, whether the user may save, and each button's element."""
    at = make().run()
    marker = at.session_state["_ballast_markers"]["f"]
    assert marker["buttons"] == {
        "undo": "st-key-f--undo",
        "redo": "st-key-f--redo",
        "apply": "st-key-f--apply",
        "reset": "st-key-f--reset",
    }
    assert (marker["past"], marker["future"], marker["write"]) == (False, False, True)
    assert (marker["count"], button(at, "undo").disabled) == (0, True)
    at.text_input(key="f.name").input("B").run()
    marker = at.session_state["_ballast_markers"]["f"]
    assert (marker["past"], marker["future"], marker["count"]) == (True, False, 1)
    button(at, "undo").click().run()
    marker = at.session_state["_ballast_markers"]["f"]
    assert (marker["past"], marker["future"], marker["count"]) == (False, True, 0)
    # What the browser is told matches what the server draws.
    for name, on in (("undo", False), ("redo", True), ("apply", False)):
        assert button(at, name).disabled is not on
