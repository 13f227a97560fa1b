"""Controlled widgets: stable keys, own value store, outbox, survival of unrendering."""

from __future__ import annotations

import ast
import json
from datetime import date, datetime

from streamlit.testing.v1 import AppTest


def widgets_app() -> None:
    import streamlit as st

    from ballast_ui.state import values
    from ballast_ui.widgets import (
        fragment_done,
        s_area,
        s_checkbox,
        s_date,
        s_multiselect,
        s_number,
        s_select,
        s_slider,
        s_text,
        touch_fragment,
    )
    from tests.ui.fakes import install_ctx, pending

    ctx = install_ctx()
    # As every page's run does (the app frame draws the page's journal).
    touch_fragment()
    if st.session_state.get("echo"):
        from ballast_ui.state import persist_input

        # A value reported back exactly as the store holds it.
        persist_input("f.name", values().get("f.name"))
    if st.session_state.get("show", True):
        s_text("Name", "f.name")
        s_area("Notes", "f.notes")
        s_number("Budget", "f.budget", default=0.0)
        s_select("Status", "f.status", ["draft", "active"], default="draft")
        s_multiselect("Tags", "f.tags", ["a", "b"])
        s_checkbox("Public", "f.public")
        s_date("Start", "f.start")
        s_slider("Priority", "f.priority", 1, 5, default=3)
    st.text(repr(sorted(values().items())))
    st.text(repr(sorted(pending(ctx).items())))
    fragment_done()


def make() -> AppTest:
    return AppTest.from_function(widgets_app, default_timeout=10)


def test_every_change_reaches_store_and_outbox() -> None:
    at = make().run()
    at.text_input(key="f.name").input("Alpha").run()
    at.text_area(key="f.notes").input("some notes").run()
    at.number_input(key="f.budget").set_value(12.5).run()
    at.selectbox(key="f.status").select("active").run()
    at.multiselect(key="f.tags").select("b").run()
    at.checkbox(key="f.public").check().run()
    at.date_input(key="f.start").set_value(date(2026, 5, 1)).run()
    at.slider(key="f.priority").set_value(5).run()
    assert not at.exception
    expected = {
        "f.name": "Alpha",
        "f.notes": "some notes",
        "f.budget": 12.5,
        "f.status": "active",
        "f.tags": ["b"],
        "f.public": True,
        "f.start": "2026-05-01",
        "f.priority": 5,
    }
    store = dict(ast.literal_eval(at.text[0].value))
    sent = dict(ast.literal_eval(at.text[1].value))
    assert store == expected
    assert sent == expected


def test_values_survive_widgets_not_rendered() -> None:
    at = make().run()
    at.text_input(key="f.name").input("kept").run()
    at.checkbox(key="f.public").check().run()
    at.session_state["show"] = False
    at.run()
    assert "f.name" not in at.session_state  # Streamlit dropped the widget key...
    at.session_state["show"] = True
    at.run()
    assert at.text_input(key="f.name").value == "kept"  # ...our store brought it back
    assert at.checkbox(key="f.public").value is True


def test_a_widget_drawn_again_is_given_its_value() -> None:
    """Seen in Chromium: after the project list, a project's form came back with an
    empty Name and Priority 1 (the browser's defaults), which then became drafts.

    Streamlit may still hold a widget's state when the widget comes back (a run cut
    short by a rerun keeps it, the browser resends it), but the browser draws a new
    element from the widget's default: the stored value must be sent along.
    """
    at = make().run()
    at.text_input(key="f.name").input("kept").run()
    at.slider(key="f.priority").set_value(4).run()
    at.session_state["show"] = False
    at.run()
    # Streamlit holding on to states the browser no longer shows.
    at.session_state["f.name"] = ""
    at.session_state["f.priority"] = 1
    at.session_state["show"] = True
    at.run()
    assert at.text_input(key="f.name").value == "kept"
    assert at.slider(key="f.priority").value == 4
    pending = ast.literal_eval(at.text[1].value)
    assert ("f.name", "kept") in pending
    assert ("f.priority", 4) in pending


def test_an_unchanged_value_writes_no_draft() -> None:
    at = make().run()
    assert at.text[1].value == "[]"  # defaults shown, nothing to send
    at.session_state["echo"] = True
    at.run()
    assert at.text[1].value == "[]"


def test_keys_are_form_and_field() -> None:
    at = make().run()
    keys = {w.key for w in at.text_input} | {w.key for w in at.checkbox}
    assert keys == {"f.name", "f.public"}


def table_app() -> None:
    import streamlit as st

    from ballast_ui.state import values
    from ballast_ui.widgets import journal_meta, s_table
    from tests.ui.fakes import install_ctx

    install_ctx()
    values().setdefault(
        "t.counts", [{"n": 3, "x": 1.5, "ok": True}, {"n": 4, "x": None, "ok": False}]
    )
    s_table("Milestones", "t.rows", ["title", "due"], default=[{"title": "a"}])
    s_table("Counts", "t.counts", ["n", "x", "ok"])
    st.text(repr(sorted((m["key"], m["kind"]) for m in journal_meta().values())))
    st.text(repr(journal_meta().get("st-key-t-rows")))
    st.text(repr(journal_meta().get("st-key-t-counts")))


def test_tables_of_every_column_type_are_journaled() -> None:
    """Numbers and checkboxes too: the editor's edit state carries them as JSON numbers
    and booleans (recorded in Chromium: ``{"0": {"n": 7}, "1": {"x": 2.25, "ok":
    true}}``), which the browser applies to the same base as the server."""
    at = AppTest.from_function(table_app, default_timeout=10).run()
    assert not at.exception
    assert ast.literal_eval(at.text[0].value) == [
        ("t.counts", "table"),
        ("t.rows", "table"),
    ]
    assert ast.literal_eval(at.text[1].value) == {
        "key": "t.rows",
        "kind": "table",
        "columns": ["title", "due"],
        "base": [{"title": "a", "due": None}],
    }
    assert ast.literal_eval(at.text[2].value) == {
        "key": "t.counts",
        "kind": "table",
        "columns": ["n", "x", "ok"],
        "base": [{"n": 3, "x": 1.5, "ok": True}, {"n": 4, "x": None, "ok": False}],
    }


def frame_app() -> None:
    import streamlit as st

    from ballast_ui.state import values
    from ballast_ui.widgets import _shadow, s_table
    from tests.ui.fakes import install_ctx

    install_ctx()
    if st.session_state.pop("replace", False):
        # Rows changed elsewhere (a restore, an undo): a new base.
        values()["t.rows"] = [{"title": "b", "due": None}]
    s_table("Milestones", "t.rows", ["title", "due"], default=[{"title": "a"}])
    frame = _shadow()["t.rows::frame"][2]
    seen = st.session_state.setdefault("frames", [])
    seen.append(id(frame))
    st.session_state.setdefault("held", []).append(frame)
    st.text(repr((len(set(seen)), list(frame["title"]))))


def test_a_tables_frame_is_built_once_per_base() -> None:
    at = AppTest.from_function(frame_app, default_timeout=10).run()
    assert not at.exception
    assert ast.literal_eval(at.text[0].value) == (1, ["a"])
    at.run()
    assert ast.literal_eval(at.text[0].value) == (1, ["a"])
    # A run with an edit state in the editor's key: the edits lie over the same
    # base, the frame stays (only rows changed elsewhere replace it).
    at.session_state["t.rows"] = {
        "edited_rows": {"0": {"title": "typed"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    assert not at.exception
    assert ast.literal_eval(at.text[0].value) == (1, ["a"])
    at.session_state["replace"] = True
    at.run()
    assert ast.literal_eval(at.text[0].value) == (2, ["b"])


def test_table_rows_are_stored_dense_like_the_browser_reads_them() -> None:
    from ballast_ui.widgets import _apply_edits, _jsonable_rows

    base = [{"title": "a"}, {"title": "b", "due": "2026-01-02"}]
    edits = {
        "edited_rows": {"0": {"due": date(2026, 3, 1)}, "1": {"title": ""}},
        "added_rows": [{}, {"title": "c", "extra": 1}],
        "deleted_rows": [],
    }
    rows = _jsonable_rows(_apply_edits(base, edits), ["title", "due"])
    assert rows == [
        {"title": "a", "due": "2026-03-01"},
        {"title": None, "due": "2026-01-02"},
        {"title": None, "due": None},
        {"title": "c", "due": None},
    ]
    # Exactly the columns, in order: the browser compares JSON texts.
    assert [list(r) for r in rows] == [["title", "due"]] * 4
    assert _jsonable_rows([{"due": float("nan")}], ["title", "due"]) == [
        {"title": None, "due": None}
    ]


MILESTONE_COLUMNS = ["title", "due", "done", "hours"]


def milestone_kinds() -> dict[str, str]:
    import streamlit as st

    from ballast_ui.widgets import column_kinds

    return column_kinds(
        MILESTONE_COLUMNS,
        {
            "due": st.column_config.DateColumn(),
            "done": st.column_config.CheckboxColumn(),
            "hours": st.column_config.NumberColumn(min_value=0),
        },
    )


def test_column_kinds_come_from_the_column_config() -> None:
    import streamlit as st

    from ballast_ui.widgets import column_kinds

    assert milestone_kinds() == {
        "title": "text",
        "due": "date",
        "done": "bool",
        "hours": "number",
    }
    # A label only, a text column, a column not configured: text.
    assert column_kinds(
        ["a", "b", "c"], {"a": "A", "b": st.column_config.TextColumn()}
    ) == {"a": "text", "b": "text", "c": "text"}
    assert column_kinds(["a"]) == {"a": "text"}


def test_typed_cells_are_stored_as_json_whatever_the_editor_or_frame_holds() -> None:
    import math

    import pandas as pd

    from ballast_ui.widgets import _apply_edits, _jsonable_rows

    kinds = milestone_kinds()
    frame = pd.DataFrame(
        {
            "n": pd.Series([3, -7], dtype="int64"),
            "x": pd.Series([math.nan, 10.0**300]),
            "ok": pd.Series([True, False]),
        }
    )
    numpy_cells = frame.to_dict("records")
    base = [
        {"title": "a", "due": "2026-03-15", "done": True, "hours": 3},
        {"title": "b", "due": None, "done": None, "hours": None},
    ]
    edits = {
        "edited_rows": {
            # From a frame: a timestamp (the time dropped in a date column), NumPy
            # booleans and numbers, NaN.
            "0": {
                "due": pd.Timestamp("2026-04-01 13:45"),
                "done": numpy_cells[1]["ok"],
                "hours": numpy_cells[0]["x"],
            },
            "1": {
                "due": datetime(2026, 5, 2, 23, 59),
                "done": numpy_cells[0]["ok"],
                "hours": numpy_cells[1]["n"],
            },
        },
        "added_rows": [
            # As the edit state has them (JSON).
            {"title": "c", "due": "2026-12-31", "done": False, "hours": 0},
            {"due": date(2027, 1, 1), "done": pd.NA, "hours": numpy_cells[1]["x"]},
            {"title": "", "due": pd.NaT, "hours": 10**30},
            {"hours": math.inf},
        ],
        "deleted_rows": [],
    }
    rows = _jsonable_rows(_apply_edits(base, edits), MILESTONE_COLUMNS, kinds)
    assert rows == [
        {"title": "a", "due": "2026-04-01", "done": False, "hours": None},
        {"title": "b", "due": "2026-05-02", "done": True, "hours": -7},
        {"title": "c", "due": "2026-12-31", "done": False, "hours": 0},
        {"title": None, "due": "2027-01-01", "done": None, "hours": 1e300},
        {"title": None, "due": None, "done": None, "hours": 10**30},
        {"title": None, "due": None, "done": None, "hours": None},
    ]
    # JSON types exactly (not NumPy's, not a float for an int): stored as JSON text.
    assert [type(r["done"]) for r in rows[:3]] == [bool, bool, bool]
    assert [type(r["hours"]) for r in rows[1:5]] == [int, int, float, int]
    assert json.loads(json.dumps(rows, allow_nan=False)) == rows
    # Untyped, a timestamp keeps its time (as before).
    assert _jsonable_rows([{"at": pd.Timestamp("2026-04-01 13:45")}], ["at"]) == [
        {"at": "2026-04-01T13:45:00"}
    ]


def test_typed_rows_round_trip_through_the_editors_frame() -> None:
    """Stored rows -> the frame the editor shows -> rows again: the same rows."""
    from ballast_ui.widgets import _frame, _jsonable_rows

    kinds = milestone_kinds()
    rows = [
        {"title": "Kickoff", "due": "2026-03-15", "done": True, "hours": 12.5},
        {"title": None, "due": None, "done": None, "hours": None},
        {"title": "b", "due": "2026-01-02", "done": False, "hours": 3},
        {"title": "c", "due": None, "done": False, "hours": -2},
    ]
    frame = _frame(rows, MILESTONE_COLUMNS, kinds)
    assert list(frame["due"]) == [date(2026, 3, 15), None, date(2026, 1, 2), None]
    assert str(frame["done"].dtype) == "boolean"
    assert str(frame["hours"].dtype) == "Float64"
    back = _jsonable_rows(frame.to_dict("records"), MILESTONE_COLUMNS, kinds)
    assert back == rows
    # No rows: still typed columns, not text (nor float NaN) columns.
    empty = _frame([], MILESTONE_COLUMNS, kinds)
    assert len(empty) == 0
    assert [str(t) for t in empty.dtypes] == ["object", "object", "boolean", "Float64"]
    # Names in a plain object index: the editor reads them one by one on every run,
    # and from an Arrow-backed string index each read was a pyarrow call.
    assert frame.columns.dtype == object
    assert empty.columns.dtype == object
    # A stored value the column's type cannot show is shown empty (kept in the rows).
    odd = _frame(
        [{"title": "x", "due": "soon", "done": "yes", "hours": True}],
        MILESTONE_COLUMNS,
        kinds,
    )
    assert odd.iloc[0]["due"] is None
    assert odd["done"].isna().all()
    assert odd["hours"].isna().all()
    # An integer JSON allows but no float holds: shown empty, the page still drawn.
    huge = _frame([{"title": "x", "hours": 10**400}], MILESTONE_COLUMNS, kinds)
    assert huge["hours"].isna().all()


def typed_table_app() -> None:
    import streamlit as st

    from ballast_ui.state import values
    from ballast_ui.widgets import _table_changed, journal_meta, s_table
    from tests.ui.fakes import install_ctx, pending
    from tests.ui.test_widgets import MILESTONE_COLUMNS, milestone_kinds

    ctx = install_ctx()
    kinds = milestone_kinds()
    if st.session_state.pop("commit", False):
        # What the editor's on_change does with the edit state it sent.
        _table_changed("t.ms", MILESTONE_COLUMNS, kinds)
    s_table(
        "Milestones",
        "t.ms",
        MILESTONE_COLUMNS,
        column_config={
            "due": st.column_config.DateColumn(),
            "done": st.column_config.CheckboxColumn(),
            "hours": st.column_config.NumberColumn(min_value=0),
        },
    )
    st.text(repr(values().get("t.ms")))
    st.text(repr(journal_meta()["st-key-t-ms"]["base"]))
    st.text(repr(sorted(pending(ctx))))


def test_an_empty_typed_table_then_a_typed_row() -> None:
    at = AppTest.from_function(typed_table_app, default_timeout=10).run()
    # An empty table of typed columns is drawn (Streamlit refuses a date column over
    # text cells) and sends nothing: no draft for an untouched table.
    assert not at.exception
    assert ast.literal_eval(at.text[0].value) == []
    assert ast.literal_eval(at.text[2].value) == []
    at.session_state["t.ms"] = {
        "edited_rows": {},
        "added_rows": [
            {"title": "Kickoff", "due": "2026-03-15", "done": True, "hours": 12.5}
        ],
        "deleted_rows": [],
    }
    at.session_state["commit"] = True
    at.run()
    assert not at.exception
    stored = [{"title": "Kickoff", "due": "2026-03-15", "done": True, "hours": 12.5}]
    assert ast.literal_eval(at.text[0].value) == stored
    assert ast.literal_eval(at.text[2].value) == ["t.ms"]
    # Drawn anew over the stored rows (a reload): the same cells, typed.
    del at.session_state["t.ms"]
    at.run()
    assert not at.exception
    assert ast.literal_eval(at.text[1].value) == stored


def journal_restore_app() -> None:
    import streamlit as st

    from ballast_ui.state import apply_journal, values
    from ballast_ui.widgets import fragment_done, s_select, s_text, touch_fragment
    from tests.ui.fakes import install_ctx

    ctx = install_ctx()
    touch_fragment()
    s_select("Status", "f.status", ["draft", "active", "paused"], default="draft")
    s_text("Name", "f.name")
    restore = st.session_state.pop("restore", None)
    if restore:
        st.text(repr(apply_journal(ctx, restore)))
    st.text(repr(sorted(values().items())))
    fragment_done()


def test_a_journal_restore_never_undoes_a_change_made_in_this_session() -> None:
    # The browser sends the journal's unacknowledged values once its session is ready.
    # A page just opened: the user picks "active", then at once "paused"; the restore
    # the browser sent in between carries "active" and arrives last.
    at = AppTest.from_function(journal_restore_app, default_timeout=10).run()
    at.selectbox(key="f.status").select("active").run()
    at.selectbox(key="f.status").select("paused").run()
    at.session_state["restore"] = {"f.status": "active", "f.name": "typed before"}
    at.run()
    assert not at.exception
    # The untouched field comes back from the journal; the edited one keeps its value.
    assert ast.literal_eval(at.text[0].value) == ["f.name"]
    store = dict(ast.literal_eval(at.text[1].value))
    assert store == {"f.status": "paused", "f.name": "typed before"}
    assert at.selectbox(key="f.status").value == "paused"
    at.run()
    assert at.selectbox(key="f.status").value == "paused"
    assert at.text_input(key="f.name").value == "typed before"


class TestFileValue:
    """What the browser's file field sends is checked, never trusted."""

    @staticmethod
    def sent(data: bytes = b"hello e2e", **over: object) -> dict[str, object]:
        import base64

        raw: dict[str, object] = {
            "name": "notes.txt",
            "size": len(data),
            "type": "text/plain",
            "sha256": "0" * 64,  # a lie: the server computes it from the content
            "content_b64": base64.b64encode(data).decode(),
            "at": 1,
        }
        raw.update(over)
        return raw

    def test_content_is_decoded_and_hashed_here(self) -> None:
        import hashlib

        from ballast_ui.widgets import file_value

        value, data = file_value(self.sent(), 0)
        assert data == b"hello e2e"
        assert value == {
            "name": "notes.txt",
            "size": 9,
            "type": "text/plain",
            "sha256": hashlib.sha256(b"hello e2e").hexdigest(),
            "content_b64": "aGVsbG8gZTJl",
        }

    def test_a_larger_file_is_kept_whole_for_the_session_not_in_the_draft(
        self,
    ) -> None:
        from ballast_ui.widgets import MAX_INLINE_FILE_BYTES, file_value

        big = b"x" * (MAX_INLINE_FILE_BYTES + 1)
        value, data = file_value(self.sent(big), 0)
        assert data == big
        assert value is not None
        assert value["content_b64"] is None
        assert value["size"] == MAX_INLINE_FILE_BYTES + 1

    def test_metadata_only_keeps_a_well_formed_hash_or_none(self) -> None:
        from ballast_ui.widgets import file_value

        good = "ab" * 32
        value, data = file_value(
            self.sent(size=10**9, content_b64=None, sha256=good), 0
        )
        assert data is None
        assert value is not None
        assert (value["sha256"], value["size"]) == (good, 10**9)
        for bad in ("AB" * 32, "z" * 64, "a" * 63, 5, None, "a" * 64 + "\n"):
            value, _ = file_value(self.sent(content_b64=None, sha256=bad), 0)
            assert value is not None
            assert value["sha256"] is None, bad

    def test_removed_clears(self) -> None:
        from ballast_ui.widgets import file_value

        assert file_value({"removed": True, "at": 2}, 0) == (None, None)

    def test_names_are_reduced_to_their_last_segment(self) -> None:
        from ballast_ui.widgets import file_value

        for name in ("../../etc/passwd", "C:\\Users\\x\\passwd", "/passwd"):
            value, _ = file_value(self.sent(name=name), 0)
            assert value is not None
            assert value["name"] == "passwd"

    def test_odd_types_fall_back(self) -> None:
        from ballast_ui.widgets import file_value

        for kind in (None, "", 7, "a" * 201, "text/plain\r\nX-Evil: 1"):
            value, _ = file_value(self.sent(type=kind), 0)
            assert value is not None
            assert value["type"] == "application/octet-stream", kind

    def test_bad_input_is_refused_with_a_reason(self) -> None:
        import pytest

        from ballast_ui.widgets import file_value

        cases: list[tuple[object, str]] = [
            (None, "no file"),
            ("notes.txt", "no file"),
            (self.sent(name=""), "needs a name"),
            (self.sent(name="/"), "needs a name"),
            (self.sent(name=None), "needs a name"),
            (self.sent(name="a" * 256), "needs a name"),
            (self.sent(name="a\x00b.txt"), "control characters"),
            (self.sent(name="a\nb.txt"), "control characters"),
            (self.sent(size=-1), "not a byte count"),
            (self.sent(size="9"), "not a byte count"),
            (self.sent(size=True), "not a byte count"),
            (self.sent(size=9.0), "not a byte count"),
            (self.sent(size=10), "9 bytes arrived of 10"),
            (self.sent(content_b64="not base64!"), "not base64"),
            (self.sent(content_b64=12), "not base64"),
            (self.sent(content_b64="aGVsbG8gZTJl\n"), "not base64"),
        ]
        for raw, reason in cases:
            with pytest.raises(ValueError, match=reason):
                file_value(raw, 0)
        with pytest.raises(
            ValueError, match=r"larger than this field takes \(8 bytes\)"
        ):
            file_value(self.sent(), 8)
        value, _ = file_value(self.sent(), 9)
        assert value is not None

    def test_an_empty_file_is_a_file(self) -> None:
        from ballast_ui.widgets import file_value

        value, data = file_value(self.sent(b""), 0)
        assert data == b""
        assert value is not None
        assert (value["size"], value["content_b64"]) == (0, "")
