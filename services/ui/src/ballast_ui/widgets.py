"""Controlled widgets: stable keys, values mirrored to our own store and the api.

Each ``s_*`` widget uses the key ``"{form_id}.{field}"``. Before the widget is drawn,
its Streamlit key is filled from the value store when Streamlit dropped it (the
widget was not rendered in an earlier run) or the store holds a newer value (restore,
undo, reset). Its ``on_change`` callback hands the new value to `persist_input`.
Values are stored JSON-ready (dates as ISO strings, tables as row lists).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import pandas as pd
import streamlit as st

from ballast_ui.metrics import note_trigger
from ballast_ui.st_internals import current_run
from ballast_ui.state import persist_input, values

# Files up to this size are kept in the draft itself; larger ones by metadata only.
MAX_INLINE_FILE_BYTES = 96 * 1024
_SHADOW = "_ballast_shadow"
_ECHO = "_ballast_echo"
# How long after the server pushed a value into a widget (undo, redo, reset, restore)
# the widget's previous value reported back is taken for the browser's stale echo.
ECHO_WINDOW_S = 2.0


def widget_css_class(key: str) -> str:
    """The CSS class Streamlit puts on a keyed element's container."""
    return "st-key-" + "".join(c if c.isalnum() or c in "_-" else "-" for c in key)


def _shadow() -> dict[str, Any]:
    shadow: dict[str, Any] = st.session_state.setdefault(_SHADOW, {})
    return shadow


# Per fragment: the run it was seen in last, the widgets drawn in that run and in the
# completed run before (see `_book`).
_RUNS = "_ballast_runs"
# Set by the app frame (`ballast_ui.app.main`) during a whole-app run.
IN_FULL_RUN = "_ballast_in_full_run"


def _book() -> list[Any]:
    """This fragment's record: ``[run, drawn in the run before, drawn now, complete]``.

    "The run before" counts only if it completed (`fragment_done`): a run cut short
    by a rerun may never have reached the browser, so nothing it drew counts.
    """
    run, fragment = current_run()
    runs: dict[str | None, list[Any]] = st.session_state.setdefault(_RUNS, {})
    book = runs.get(fragment)
    if book is None or book[0] is not run:
        # A new run of this fragment. The run object is held, so its identity cannot
        # be reused meanwhile.
        book = [run, book[2] if book and book[3] else set(), set(), False]
        runs[fragment] = book
    return book


def touch_fragment() -> None:
    """Note that the current fragment runs (call early in every run of a page).

    A page that draws no controlled widget in a run (the project list instead of a
    project) still counts as a run of its fragment: the widgets it did not draw are
    gone from the browser, and `_prepare` gives them their value when they come back.
    """
    _book()


# A fragment nested in a page's fragment -> that page fragment (`nest_in_page`).
_NESTED = "_ballast_nested"
# While a page's fragment draws: its fragment id (set by the app frame).
IN_PAGE_RUN = "_ballast_in_page_run"


def nest_in_page() -> None:
    """Note that the current fragment is nested in the page fragment now drawing (call
    first in every run of a nested fragment).

    A run of the page that does not draw the nested fragment (the project list instead
    of a project's form) removes its widgets from the browser: `fragment_done` then
    forgets what the nested fragment drew, and its next run gives every widget its
    value again, as `touch_fragment` does for a page's own widgets.
    """
    page = st.session_state.get(IN_PAGE_RUN)
    _run, fragment = current_run()
    if page is not None and fragment is not None and fragment != page:
        st.session_state.setdefault(_NESTED, {})[fragment] = page


def fragment_done() -> None:
    """Note that the current run of this fragment drew everything (call at its end)."""
    book = _book()
    book[3] = True
    _run, fragment = current_run()
    runs: dict[str | None, list[Any]] = st.session_state[_RUNS]
    nested: dict[str, str] = st.session_state.get(_NESTED, {})
    for child, page in nested.items():
        drawn = runs.get(child)
        if page == fragment and drawn is not None and drawn[0] is not book[0]:
            # Not drawn by this run of its page: nothing of it is in the browser.
            runs[child] = [book[0], set(), set(), True]


def _seen(key: str) -> bool:
    """Record ``key`` as drawn in this run; whether the completed run before drew it."""
    book = _book()
    book[2].add(key)
    return key in book[1] or book[0] is None


def _prepare(key: str, default: Any, to_widget: Callable[[Any], Any]) -> None:
    """Fill the widget key from the store unless the widget already shows it."""
    store = values()
    if key not in store:
        store[key] = default
    stored = store[key]
    shadow = _shadow()
    # Drawn anew (not in the previous run of its fragment): the browser makes a new
    # element, which starts from Streamlit's default ("", the minimum ...) unless the
    # value is sent along; Streamlit may still hold the old state (a run cut short by
    # a rerun keeps it; the browser resends it) and then sends nothing.
    drawn_before = _seen(key)
    # A full run (load, reload, new tab, navigation, restore) redraws every element,
    # and Streamlit drops what an earlier run queued but had not sent yet when the next
    # run starts: what the browser shows is unknown, so the value is sent along.
    full_run = bool(st.session_state.get(IN_FULL_RUN))
    # The shadow remembers the stored value the widget was last synced with: a store
    # change made elsewhere (restore, undo, reset) is pushed into the widget.
    if (
        full_run
        or not drawn_before
        or key not in st.session_state
        or shadow.get(key, _MISSING) != stored
    ):
        before = shadow.get(key, _MISSING)
        st.session_state[key] = to_widget(stored)
        shadow[key] = stored
        if before is not _MISSING:
            echoes: dict[str, tuple[Any, float]] = st.session_state.setdefault(
                _ECHO, {}
            )
            echoes[key] = (before, time.monotonic())


_MISSING = object()


JOURNAL_KEYS = "_ballast_journal_keys"
# The journaled widgets drawn since a page's journal element last sent them.
JOURNAL_DRAWN = "_ballast_journal_drawn"


def _journal(key: str, kind: str, **extra: Any) -> None:
    """Let the browser journal keep this widget's value from the moment it changes.

    ``kind`` tells the browser how to read the value from the DOM and turn it into the
    stored (JSON) form: ``text``, ``int``, ``float``, ``bool``, ``slider``, ``select``,
    ``multi`` (both with ``labels``/``values``), ``date``, ``table`` (with ``columns``
    and the editor's ``base`` rows; any column type: the edit state is JSON).
    """
    journal: dict[str, dict[str, Any]] = st.session_state.setdefault(JOURNAL_KEYS, {})
    cls = widget_css_class(key)
    journal[cls] = {"key": key, "kind": kind, **extra}
    drawn: dict[str, None] = st.session_state.setdefault(JOURNAL_DRAWN, {})
    drawn[cls] = None


def journal_meta() -> dict[str, dict[str, Any]]:
    """The journaled widgets of this session: ``{css class: {key, kind, ...}}``."""
    meta: dict[str, dict[str, Any]] = st.session_state.get(JOURNAL_KEYS, {})
    return meta


def journal_drawn() -> dict[str, dict[str, Any]]:
    """The journaled widgets drawn since the last call, as `journal_meta` has them.

    A page's journal element sends these only: the browser keeps what every element
    sent (the Settings page's time zone list alone is 20 KB, sent with every run of
    every page before).
    """
    meta = journal_meta()
    drawn: dict[str, None] = st.session_state.pop(JOURNAL_DRAWN, {})
    return {cls: meta[cls] for cls in drawn if cls in meta}


def _labels(options: Sequence[Any], format_func: Any) -> dict[str, Any]:
    fmt = format_func if callable(format_func) else str
    return {"labels": [str(fmt(o)) for o in options], "values": list(options)}


def _stale_echo(key: str, value: Any) -> bool:
    """Whether ``value`` is the browser echoing a widget's value from before a push.

    When the server changes a widget's value (undo, redo, reset, restore), the
    browser's select element may report its previous value once more right after it
    (seen in Chromium: a second Undo brought the first one's value back). Such an
    echo is dropped and the widget set back to the stored value.
    """
    echoes: dict[str, tuple[Any, float]] = st.session_state.get(_ECHO, {})
    echo = echoes.pop(key, None)
    if echo is None:
        return False
    before, at = echo
    if value != before or time.monotonic() - at > ECHO_WINDOW_S:
        return False
    stored = values().get(key)
    return bool(stored != value)


def _changed(key: str, from_widget: Callable[[Any], Any], urgent: bool = True) -> None:
    value = from_widget(st.session_state.get(key))
    if value == values().get(key, _MISSING):
        # Not an edit: a value reported back as it was given. The browser resends the
        # state of widgets it has just removed (the project form after going back to
        # the list), and Streamlit, having dropped their state, calls them changed.
        _shadow()[key] = value
        return
    if _stale_echo(key, value):
        # The shadow no longer matches: the next draw pushes the stored value again.
        _shadow()[key] = value
        return
    _shadow()[key] = value
    note_trigger(st.session_state, "widget")
    persist_input(key, value, urgent=urgent)


def _same(v: Any) -> Any:
    return v


def s_text(label: str, key: str, default: str = "", **kwargs: Any) -> str:
    """A controlled `st.text_input`."""
    _prepare(key, default, lambda v: "" if v is None else str(v))
    if kwargs.get("type") != "password":
        _journal(key, "text")
    return str(
        st.text_input(
            label, key=key, on_change=_changed, args=(key, _same, False), **kwargs
        )
    )


def s_area(label: str, key: str, default: str = "", **kwargs: Any) -> str:
    """A controlled `st.text_area`."""
    _prepare(key, default, lambda v: "" if v is None else str(v))
    _journal(key, "text")
    return str(
        st.text_area(
            label, key=key, on_change=_changed, args=(key, _same, False), **kwargs
        )
    )


def s_number(
    label: str, key: str, default: float | int = 0, **kwargs: Any
) -> float | int:
    """A controlled `st.number_input` (int when ``default`` and ``step`` are ints)."""
    as_int = isinstance(default, int) and isinstance(kwargs.get("step", 1), int)
    cast: Callable[[Any], Any] = int if as_int else float

    def to_widget(v: Any) -> Any:
        try:
            return cast(v)
        except (TypeError, ValueError):
            return cast(default)

    _prepare(key, default, to_widget)
    _journal(key, "int" if as_int else "float")
    value = st.number_input(
        label, key=key, on_change=_changed, args=(key, _same), **kwargs
    )
    return value  # type: ignore[no-any-return]


def s_select(
    label: str, key: str, options: Sequence[Any], default: Any = None, **kwargs: Any
) -> Any:
    """A controlled `st.selectbox` over JSON-able ``options``."""
    opts = list(options)
    fallback = default if default in opts else (opts[0] if opts else None)
    _prepare(key, fallback, lambda v: v if v in opts else fallback)
    _journal(key, "select", **_labels(opts, kwargs.get("format_func")))
    return st.selectbox(
        label, opts, key=key, on_change=_changed, args=(key, _same), **kwargs
    )


def s_multiselect(
    label: str,
    key: str,
    options: Sequence[Any],
    default: Sequence[Any] = (),
    **kwargs: Any,
) -> list[Any]:
    """A controlled `st.multiselect`; values outside ``options`` are kept as options."""
    stored = values().get(key, list(default))
    opts = list(dict.fromkeys([*options, *(stored or [])]))
    _prepare(key, list(default), lambda v: [x for x in (v or []) if x in opts])
    _journal(key, "multi", **_labels(opts, kwargs.get("format_func")))
    return list(
        st.multiselect(
            label, opts, key=key, on_change=_changed, args=(key, list), **kwargs
        )
    )


def s_checkbox(label: str, key: str, default: bool = False, **kwargs: Any) -> bool:
    """A controlled `st.checkbox`."""
    _prepare(key, default, bool)
    _journal(key, "bool")
    return bool(
        st.checkbox(label, key=key, on_change=_changed, args=(key, bool), **kwargs)
    )


def _to_date(v: Any) -> date | None:
    if isinstance(v, date):
        return v
    if isinstance(v, str) and v:
        try:
            return date.fromisoformat(v[:10])
        except ValueError:
            return None
    return None


def _from_date(v: Any) -> str | None:
    return v.isoformat() if isinstance(v, date) else None


def s_date(
    label: str, key: str, default: date | None = None, **kwargs: Any
) -> date | None:
    """A controlled `st.date_input`; stored as an ISO date string (or ``None``)."""
    _prepare(key, _from_date(default), _to_date)
    _journal(key, "date")
    value = st.date_input(
        label, key=key, on_change=_changed, args=(key, _from_date), **kwargs
    )
    return value if isinstance(value, date) else None


def s_slider(
    label: str,
    key: str,
    min_value: int | float,
    max_value: int | float,
    default: int | float | None = None,
    **kwargs: Any,
) -> Any:
    """A controlled single-value `st.slider`."""
    start = min_value if default is None else default

    def to_widget(v: Any) -> Any:
        try:
            return type(min_value)(min(max(v, min_value), max_value))
        except TypeError:
            return start

    _prepare(key, start, to_widget)
    _journal(key, "slider", int=isinstance(min_value, int))
    return st.slider(
        label,
        min_value=min_value,
        max_value=max_value,
        key=key,
        on_change=_changed,
        args=(key, _same),
        **kwargs,
    )


# A file name longer than this, or with a control character, is refused.
MAX_FILE_NAME = 255
_SHA256 = re.compile(r"[0-9a-f]{64}")


def file_bytes_key(key: str) -> str:
    """Where this session keeps the content of the file field `key` (the draft keeps
    it only up to `MAX_INLINE_FILE_BYTES`)."""
    return f"{key}::bytes"


def file_value(raw: Any, max_bytes: int) -> tuple[dict[str, Any] | None, bytes | None]:
    """The stored value and content of what the browser's file field sent.

    Never trusted: the name is reduced to its last path segment, the content must be
    base64 of exactly ``size`` bytes and its SHA-256 is computed here; without content
    (a larger file) only a well-formed SHA-256 is kept. ``{"removed": true}`` clears
    the field: ``(None, None)``.

    Raises:
        ValueError: What is wrong with it, said for the user.
    """
    if not isinstance(raw, dict):
        raise ValueError("the browser sent no file")
    if raw.get("removed") is True:
        return None, None
    name = raw.get("name")
    if isinstance(name, str):
        name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not isinstance(name, str) or not 0 < len(name) <= MAX_FILE_NAME:
        raise ValueError(f"a file needs a name of 1 to {MAX_FILE_NAME} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError("the file name has control characters")
    size = raw.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"{name}: the size is not a byte count")
    if max_bytes and size > max_bytes:
        raise ValueError(
            f"{name} is larger than this field takes ({max_bytes:,} bytes)"
        )
    kind = raw.get("type")
    if not isinstance(kind, str) or len(kind) > 200 or not kind.isprintable():
        kind = "application/octet-stream"
    content = raw.get("content_b64")
    data: bytes | None = None
    if content is not None:
        if not isinstance(content, str):
            raise ValueError(f"{name}: the content is not base64")
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{name}: the content is not base64") from None
        if len(data) != size:
            raise ValueError(f"{name}: {len(data):,} bytes arrived of {size:,}")
        sha256: str | None = hashlib.sha256(data).hexdigest()
    else:
        claimed = raw.get("sha256")
        sha256 = (
            claimed if isinstance(claimed, str) and _SHA256.fullmatch(claimed) else None
        )
    value = {
        "name": name,
        "size": size,
        "type": kind or "application/octet-stream",
        "sha256": sha256,
        "content_b64": (
            content if data is not None and size <= MAX_INLINE_FILE_BYTES else None
        ),
    }
    return value, data


def _problem_key(key: str) -> str:
    return f"{key}::problem"


def _file_changed(key: str, max_bytes: int) -> None:
    raw = getattr(st.session_state.get(f"{key}::upload"), "file", None)
    if raw is None:
        return
    try:
        value, data = file_value(raw, max_bytes)
    except ValueError as exc:
        st.session_state[_problem_key(key)] = {"text": str(exc), "at": time.time()}
        return
    st.session_state.pop(_problem_key(key), None)
    if data is None:
        st.session_state.pop(file_bytes_key(key), None)
    else:
        st.session_state[file_bytes_key(key)] = data
    note_trigger(st.session_state, "widget")
    persist_input(key, value, urgent=True)


def s_file(
    label: str,
    key: str,
    *,
    type: Sequence[str] = (),
    disabled: bool = False,
    inline_limit: int = MAX_INLINE_FILE_BYTES,
    max_bytes: int = 0,
) -> dict[str, Any] | None:
    """A controlled file field (one file; `ballast_ui.components.file_field`).

    The stored value is ``{name, size, type, sha256, content_b64}`` (content only for
    files up to `MAX_INLINE_FILE_BYTES`). Files up to `inline_limit` bytes reach the
    server with their content, kept for this session under `file_bytes_key`; larger
    ones by metadata only. A browser cannot be given a file back, so after a refresh
    the stored file is named under the field instead.

    The file travels on the session's WebSocket, not to an upload URL of the server
    process holding the session: it works behind replicas without session affinity.
    """
    from ballast_ui.components import file_field  # components build on this module

    _seen(f"{key}::upload")
    stored = values().get(key)
    kept = stored if isinstance(stored, dict) and stored.get("name") else None
    file_field(
        label=label,
        kept={"name": kept["name"], "size": kept.get("size", 0)} if kept else None,
        accept=list(type),
        inline_limit=inline_limit,
        max_bytes=max_bytes,
        disabled=disabled,
        problem=st.session_state.get(_problem_key(key)),
        on_file=lambda: _file_changed(key, max_bytes),
        key=f"{key}::upload",
    )
    return kept


def _apply_edits(base: list[dict[str, Any]], edits: Any) -> list[dict[str, Any]]:
    rows = [dict(r) for r in base]
    if not isinstance(edits, dict):
        return rows
    for idx, change in (edits.get("edited_rows") or {}).items():
        i = int(idx)
        if 0 <= i < len(rows):
            rows[i].update(change)
    deleted = {int(i) for i in edits.get("deleted_rows") or []}
    rows = [r for i, r in enumerate(rows) if i not in deleted]
    rows += [dict(r) for r in edits.get("added_rows") or []]
    return rows


# A column's kind from its configured type (`st.column_config`): how a cell is stored.
# Any other column (or none configured) is ``text``: JSON values are kept as they are.
_COLUMN_KINDS = {"date": "date", "checkbox": "bool", "number": "number"}


def column_kinds(
    columns: Sequence[str], column_config: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Each column's kind (``text``, ``date``, ``bool`` or ``number``) from its config."""
    kinds = {}
    for c in columns:
        conf = (column_config or {}).get(c)
        type_config = conf.get("type_config") if isinstance(conf, dict) else None
        kind = type_config.get("type") if isinstance(type_config, dict) else None
        kinds[c] = _COLUMN_KINDS.get(str(kind), "text")
    return kinds


def _cell(v: Any, kind: str) -> Any:
    """A cell in its stored (JSON) form.

    JSON values stay as they are (the edit state is JSON: a date cell comes as
    ``"YYYY-MM-DD"``, a checkbox as true/false, a number as a number), as the browser
    journal keeps them; what only a frame holds is turned into JSON by the column's
    kind: a date or timestamp into its ISO date (a ``date`` column drops the time),
    NumPy scalars into Python ones, NaN, NaT, NA, infinities and ``""`` into ``None``.
    """
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, datetime):
        return (v.date() if kind == "date" else v).isoformat()
    if isinstance(v, date):
        return v.isoformat()
    # Python's and NumPy's (a frame's) booleans and numbers alike.
    if pd.api.types.is_bool(v):
        return bool(v)
    if pd.api.types.is_integer(v):
        return int(v)
    if pd.api.types.is_float(v):
        # NaN from an empty cell; no infinity is JSON either.
        return float(v) if math.isfinite(v) else None
    if not isinstance(v, str):
        v = str(v)
    return None if v == "" else v


def _jsonable_rows(
    rows: list[dict[str, Any]],
    columns: Sequence[str],
    kinds: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Rows in their stored form: exactly the columns, in order, JSON values.

    An empty cell is ``None`` whether the editor reports NaN, ``None`` or ``""``; the
    browser journal builds rows the same way and compares them as JSON text.
    """
    kinds = kinds or {}
    return [
        {k: _cell(row.get(k), kinds.get(k, "text")) for k in columns} for row in rows
    ]


def _table_changed(
    key: str, columns: Sequence[str], kinds: Mapping[str, str] | None = None
) -> None:
    base = _shadow().get(f"{key}::base", [])
    rows = _jsonable_rows(_apply_edits(base, st.session_state.get(key)), columns, kinds)
    _shadow()[f"{key}::rows"] = rows
    note_trigger(st.session_state, "widget")
    persist_input(key, rows, urgent=True)


def _number(v: Any) -> float | None:
    """A number cell's value; None (shown empty) for anything else, and for an
    integer too large for a float (JSON allows 10**400: the frame could not hold it)."""
    if not isinstance(v, int | float) or isinstance(v, bool):
        return None
    try:
        return float(v)
    except OverflowError:
        return None


def _frame(
    base: list[dict[str, Any]], columns: Sequence[str], kinds: Mapping[str, str]
) -> pd.DataFrame:
    """The editor's frame over stored rows, each typed column of its own dtype.

    Dense rows: a column no row has a value in stays a text column (not float NaN),
    unless it is typed: then it has its type's dtype even with no rows or only empty
    cells (date objects, nullable booleans, nullable floats), so the editor draws a
    date picker, a checkbox or a number cell from the first row on. A stored value
    the column's type cannot show (a text in a date column) is shown empty.
    """
    # Column names in a plain object index: the editor checks and converts them one
    # by one on every run, and an Arrow-backed string index made each name a pyarrow
    # call (about 0.1 ms a run).
    frame = pd.DataFrame(base, columns=pd.Index(list(columns), dtype=object))
    for c in columns:
        kind = kinds.get(c, "text")
        cells = [r.get(c) for r in base]
        if kind == "date":
            frame[c] = pd.Series([_to_date(v) for v in cells], dtype=object)
        elif kind == "bool":
            frame[c] = pd.Series(
                [v if isinstance(v, bool) else None for v in cells], dtype="boolean"
            )
        elif kind == "number":
            numbers = [_number(v) for v in cells]
            frame[c] = pd.Series(numbers, dtype="Float64")
    # Consolidated once here (a copy consolidates), not by the editor's copy each run.
    return frame.copy()


def s_table(
    label: str,
    key: str,
    columns: Sequence[str],
    default: Sequence[dict[str, Any]] = (),
    column_config: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """A controlled `st.data_editor` over a list of row dicts.

    The editor shows a fixed base (the rows when editing started) plus its own edits;
    when the stored rows change elsewhere (restore, undo), the base is replaced and the
    editor's edit state reset. ``column_config`` types columns (`st.column_config`
    DateColumn, CheckboxColumn, NumberColumn; see `column_kinds`); their cells are
    stored as JSON all the same: a date as ``"YYYY-MM-DD"``, a checkbox as true/false,
    a number as a number.
    """
    store = values()
    rows = store.setdefault(key, [dict(r) for r in default])
    shadow = _shadow()
    kinds = column_kinds(columns, column_config)
    _seen(key)
    # Reset the editor only when its state is gone (not drawn in the last run) or the
    # rows changed elsewhere. Not on "the run before was cut short": that reset the
    # edit state under a cell being typed into, and the typed value was lost.
    if key not in st.session_state or shadow.get(f"{key}::rows", _MISSING) != rows:
        shadow[f"{key}::base"] = [dict(r) for r in rows or []]
        shadow[f"{key}::rows"] = rows
        st.session_state.pop(key, None)
    base = _jsonable_rows(shadow[f"{key}::base"], columns, kinds)
    # The frame is built once per base, not on every run (about 2 ms of a project
    # page's ~35 ms rerun): the editor copies it before applying its edits.
    built = shadow.get(f"{key}::frame")
    typed = list(kinds.items())  # the columns in order, with their kinds
    if built is None or built[0] != base or built[1] != typed:
        built = (base, typed, _frame(base, columns, kinds))
        shadow[f"{key}::frame"] = built
    frame = built[2]
    # The browser journal rebuilds the rows from the editor's edit state and this base,
    # as `_table_changed` does: the edit state is JSON whatever the column type (a
    # number cell comes back as a JSON number, a checkbox as true/false, a date as
    # "YYYY-MM-DD"), so every table is journaled.
    _journal(key, "table", columns=list(columns), base=base)
    st.caption(label)
    st.data_editor(
        frame,
        key=key,
        on_change=_table_changed,
        args=(key, list(columns), kinds),
        num_rows="dynamic",
        hide_index=True,
        width="stretch",
        column_config=dict(column_config or {}),
        **kwargs,
    )
    return list(store.get(key) or [])


def set_widget_value(key: str, value: Any) -> None:
    """Change a controlled widget's value from code (callbacks only) and persist it."""
    persist_input(key, value, record=False)
