"""Controlled forms: saved vs current values, dirty markers, undo/redo, conflicts.

A form is a set of controlled widgets sharing a ``form_id``. `FormState` keeps what
was last saved (data + version), the undo/redo history of the form's values, and a
pending conflict. `save_form` writes through a caller-supplied saver (forms api,
project PATCH ...), so the same machinery serves every resource.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import streamlit as st

from ballast_common.errors import AppError, ConflictError
from ballast_ui.client import ApiUnavailable
from ballast_ui.i18n import BLANK
from ballast_ui.metrics import note_trigger
from ballast_ui.outbox import split_key
from ballast_ui.state import get_ctx, on_change, persist_input, track, values
from ballast_ui.widgets import widget_css_class

HISTORY_LIMIT = 100
_FORMS = "_ballast_forms"

Validator = Callable[[Any], str | None]
Mode = Literal["save", "apply"]


@dataclass
class SaveResult:
    """What the saver returns: the stored data and its new version."""

    data: dict[str, Any]
    version: int


Saver = Callable[[dict[str, Any], int, bool], SaveResult]


@dataclass
class Conflict:
    """The saved version changed underneath: theirs (stored) vs mine (attempted)."""

    theirs: dict[str, Any]
    mine: dict[str, Any]
    their_version: int
    fields: list[str]
    # What the user asked for when the conflict came up: resolving it finishes that
    # (a "save" then closes the form, like a Save without a conflict).
    mode: Mode = "apply"


@dataclass
class FormState:
    form_id: str
    fields: list[str]
    saved: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    past: list[dict[str, Any]] = field(default_factory=list)
    future: list[dict[str, Any]] = field(default_factory=list)
    conflict: Conflict | None = None
    message: str | None = None
    # While undo/redo/reset applies a snapshot, changes are not recorded again.
    replaying: bool = False


def _forms() -> dict[str, FormState]:
    forms: dict[str, FormState] = st.session_state.setdefault(_FORMS, {})
    return forms


def _record(key: str, old: Any, _new: Any) -> None:
    """Change hook: push the form's previous snapshot onto its undo stack."""
    try:
        form_id, name = split_key(key)
    except ValueError:
        return
    form = _forms().get(form_id)
    if form is None or form.replaying or name not in form.fields:
        return
    snapshot = current(form)
    snapshot[name] = old
    form.past.append(snapshot)
    del form.past[:-HISTORY_LIMIT]
    form.future.clear()


def use_form(
    form_id: str,
    fields: Sequence[str],
    saved: Mapping[str, Any],
    version: int,
) -> FormState:
    """Get (or start) the state of a form.

    Fields the user has no value for yet take the saved value; fields with a value
    (a draft, a restored journal entry, this session's typing) keep it.

    Args:
        form_id: The form's id (widget keys are ``"{form_id}.{field}"``).
        fields: Field names.
        saved: The stored data.
        version: The stored version (0 for a new form).

    Returns:
        The form state, also kept in the session.
    """
    on_change(_record, "forms")
    forms = _forms()
    form = forms.get(form_id)
    if form is None:
        form = FormState(form_id, list(fields))
        forms[form_id] = form
    fresh = {f: saved.get(f) for f in fields}
    if form.version == 0 and not form.saved:
        form.saved, form.version = fresh, version
    elif version > form.version:
        if dirty_fields(form):
            # Keep the version the edits are based on: saving them now gets a 409 and
            # the conflict view, instead of silently overwriting the newer version.
            if form.conflict is None:
                form.message = f"Version {version} was saved meanwhile."
        else:
            form.saved, form.version = fresh, version
            # Nothing unsaved: show the newer version (no draft is written for it).
            store = values()
            for name in fields:
                store[f"{form_id}.{name}"] = fresh[name]
    store = values()
    for name in fields:
        store.setdefault(f"{form_id}.{name}", form.saved.get(name))
    return form


def current(form: FormState) -> dict[str, Any]:
    """The form's current values (what the widgets show)."""
    store = values()
    return {f: store.get(f"{form.form_id}.{f}") for f in form.fields}


def dirty_fields(form: FormState) -> list[str]:
    """Fields whose current value differs from the saved one."""
    now = current(form)
    return [f for f in form.fields if now[f] != form.saved.get(f)]


def validate(
    form: FormState, validators: Mapping[str, Validator | Sequence[Validator]]
) -> dict[str, str]:
    """Run the validators on the current values.

    Returns:
        ``{field: message}`` for every invalid field.
    """
    now = current(form)
    errors: dict[str, str] = {}
    for name, checks in validators.items():
        for check in [checks] if callable(checks) else checks:
            msg = check(now.get(name))
            if msg:
                errors[name] = msg
                break
    return errors


# What the browser needs to draw a field's note, its form's marker and toolbar buttons
# itself, at once (see `ballast_ui.components.journal`): per widget key
# ``{saved, error, form}``, per form ``{marker: css class, count: dirty fields,
# past/future: undo/redo steps left, write: may save, buttons: {name: css class}}``.
NOTES = "_ballast_notes"
MARKERS = "_ballast_markers"


def browser_notes() -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The notes and markers drawn in this session, for the browser journal."""
    return (
        st.session_state.setdefault(NOTES, {}),
        st.session_state.setdefault(MARKERS, {}),
    )


def field_note(form: FormState, name: str, errors: Mapping[str, str]) -> str:
    """The text of a field's fixed-height note slot: error, dirty marker or blank.

    Drawn right after the field's widget: the browser draws the dirty marker there
    itself as soon as the user changes the value, before the server answers.
    """
    notes, _markers = browser_notes()
    notes[f"{form.form_id}.{name}"] = {
        "saved": form.saved.get(name),
        "error": name in errors,
        "form": form.form_id,
    }
    if name in errors:
        return f":red[{errors[name]}]"
    if name in dirty_fields(form):
        return ":orange[● modified]"
    return BLANK


def _apply_snapshot(form: FormState, snapshot: Mapping[str, Any]) -> None:
    form.replaying = True
    try:
        for name in form.fields:
            persist_input(f"{form.form_id}.{name}", snapshot.get(name), record=False)
    finally:
        form.replaying = False


def undo(form_id: str) -> None:
    """Step back in the form's history (callback)."""
    form = _forms()[form_id]
    if not form.past:
        return
    form.future.append(current(form))
    _apply_snapshot(form, form.past.pop())
    note_trigger(st.session_state, "button")


def redo(form_id: str) -> None:
    """Step forward in the form's history (callback)."""
    form = _forms()[form_id]
    if not form.future:
        return
    form.past.append(current(form))
    _apply_snapshot(form, form.future.pop())
    note_trigger(st.session_state, "button")


def reset(form_id: str) -> None:
    """Discard unsaved changes: back to the saved values (undoable)."""
    form = _forms()[form_id]
    form.past.append(current(form))
    form.future.clear()
    _apply_snapshot(form, form.saved)
    form.conflict = None
    form.message = "Changes discarded."
    note_trigger(st.session_state, "button")


def save_form(
    form_id: str,
    saver: Saver,
    mode: Mode = "apply",
    *,
    validators: Mapping[str, Validator | Sequence[Validator]] | None = None,
    force: bool = False,
    data: Mapping[str, Any] | None = None,
) -> bool:
    """Save the form's current values through ``saver``.

    Pending widget values are flushed first. A stale version becomes a `Conflict`
    on the form (shown by `conflict_view`) unless ``force`` (last write wins).

    Args:
        form_id: The form.
        saver: ``saver(data, expected_version, force) -> SaveResult``.
        mode: ``"save"`` (save and close) or ``"apply"`` (save and keep editing);
            the caller decides what closing means.
        validators: Field validators; any error blocks the save.
        force: Overwrite a newer stored version.
        data: Values to save instead of the current ones (conflict resolution).

    Returns:
        ``True`` when saved.
    """
    form = _forms()[form_id]
    if validators and validate(form, validators):
        form.message = "Please fix the marked fields."
        return False
    payload = dict(data) if data is not None else current(form)
    ctx = get_ctx()
    ctx.outbox.wait_idle(1.0)
    try:
        result = saver(payload, form.version, force)
    except ConflictError as exc:
        theirs: dict[str, Any] = (
            dict(exc.current) if isinstance(exc.current, dict) else {}
        )
        nested = theirs.get("data")
        their_data: dict[str, Any] = nested if isinstance(nested, dict) else theirs
        their_version = int(theirs.get("version") or form.version)
        differing = conflicting_fields(form.fields, their_data, payload, form.saved)
        form.conflict = Conflict(
            {f: their_data.get(f) for f in form.fields},
            payload,
            their_version,
            differing,
            mode,
        )
        form.message = "Someone else saved this form meanwhile."
        return False
    except ApiUnavailable:
        form.message = "The server is unreachable: your changes are kept as a draft."
        return False
    except AppError as exc:
        form.message = f"Not saved: {exc.message}"
        return False
    form.saved = {f: result.data.get(f) for f in form.fields}
    form.version = result.version
    form.conflict = None
    _apply_snapshot(form, {**payload, **form.saved})
    form.message = "Saved." if mode == "save" else "Applied."
    # The form's kind ("project" of "project.<id>"): a journey step, not an id.
    track(ctx, "workbench.form_saved", {"form": form_id.split(".", 1)[0], "mode": mode})
    return True


_EMPTY: tuple[Any, ...] = (None, "", [], {})


def _same(a: Any, b: Any) -> bool:
    """Equal, counting a missing value and an empty one as the same."""
    return a == b or (a in _EMPTY and b in _EMPTY)


def conflicting_fields(
    fields: Sequence[str],
    theirs: Mapping[str, Any],
    mine: Mapping[str, Any],
    base: Mapping[str, Any],
) -> list[str]:
    """The fields both sides changed differently (a three-way comparison).

    A field they did not change (theirs equals the version mine was based on) or that
    ended up equal on both sides is no conflict: mine simply applies. A field absent
    on one side and empty on the other (``None`` vs ``[]``) is unchanged.
    """
    return [
        f
        for f in fields
        if not _same(theirs.get(f), base.get(f))
        and not _same(theirs.get(f), mine.get(f))
    ]


def resolve_conflict(
    form_id: str, saver: Saver, choices: Mapping[str, Literal["mine", "theirs"]]
) -> bool:
    """Save the merge of theirs and mine, per field, over the newer version.

    The save is of the kind that met the conflict (`Conflict.mode`): the caller
    closes the form after a resolved "save", as after any other Save.
    """
    form = _forms()[form_id]
    conflict = form.conflict
    if conflict is None:
        return True
    merged = {
        f: (
            conflict.theirs.get(f)
            if choices.get(f) == "theirs"
            else conflict.mine.get(f)
        )
        for f in form.fields
    }
    form.version = conflict.their_version
    form.saved = dict(conflict.theirs)
    _apply_snapshot(form, merged)
    return save_form(form_id, saver, conflict.mode, data=merged)


def _then_rerun(fn: Callable[..., None], rerun: str | None) -> Callable[..., None]:
    """Callback `fn`, then a rerun of fragment `rerun` (when set) instead of the one the
    button is in."""
    if rerun is None:
        return fn

    def run(*args: Any) -> None:
        fn(*args)
        st.rerun(rerun)

    return run


def form_toolbar(
    form: FormState,
    saver: Saver,
    *,
    on_saved: Callable[[], None] | None = None,
    validators: Mapping[str, Validator | Sequence[Validator]] | None = None,
    can_write: bool = True,
    rerun: str | None = None,
) -> None:
    """Save / Apply / Reset / Undo / Redo buttons and the form's dirty marker.

    The toolbar has a fixed height: its message slot always holds one line. A form
    drawn in a fragment of its own inside a page (`ballast_ui.fragments`) names the
    page's fragment as ``rerun``: what its buttons do (a save, an undo) may change
    more than the form, so the whole page is drawn again.
    """
    dirty = dirty_fields(form)
    fid = form.form_id

    def do_save(mode: Mode) -> None:
        note_trigger(st.session_state, "button")
        if (
            save_form(fid, saver, mode, validators=validators)
            and mode == "save"
            and on_saved
        ):
            on_saved()

    # The marker and the message each have their own column: a marker changing width
    # never moves the message sideways.
    cols = st.columns([1, 1, 1, 1, 1, 1.6, 1.6], vertical_alignment="center")
    cols[0].button(
        "Save",
        key=f"{fid}::save",
        type="primary",
        on_click=_then_rerun(do_save, rerun),
        args=("save",),
        disabled=not can_write,
    )
    cols[1].button(
        "Apply",
        key=f"{fid}::apply",
        on_click=_then_rerun(do_save, rerun),
        args=("apply",),
        disabled=not can_write or not dirty,
    )
    cols[2].button(
        "Reset",
        key=f"{fid}::reset",
        on_click=_then_rerun(reset, rerun),
        args=(fid,),
        disabled=not dirty,
    )
    cols[3].button(
        "Undo",
        key=f"{fid}::undo",
        on_click=_then_rerun(undo, rerun),
        args=(fid,),
        disabled=not form.past,
        help="Ctrl+Z",
    )
    cols[4].button(
        "Redo",
        key=f"{fid}::redo",
        on_click=_then_rerun(redo, rerun),
        args=(fid,),
        disabled=not form.future,
        help="Ctrl+Shift+Z",
    )
    marker = (
        f":orange[● {len(dirty)} unsaved]" if dirty else ":green[✓ no unsaved changes]"
    )
    # Keyed: hidden while the UI server is unreachable (see ballast_ui.components),
    # and drawn by the browser at once after a change (`browser_notes`), as are the
    # states of the buttons above.
    browser_notes()[1][fid] = {
        "marker": widget_css_class(f"{fid}::marker"),
        "count": len(dirty),
        "past": bool(form.past),
        "future": bool(form.future),
        "write": can_write,
        "buttons": {
            name: widget_css_class(f"{fid}::{name}")
            for name in ("undo", "redo", "apply", "reset")
        },
    }
    cols[5].container(key=f"{fid}::marker").markdown(marker)
    cols[6].markdown(form.message or BLANK)


def conflict_view(
    form: FormState,
    saver: Saver,
    labels: Mapping[str, str] | None = None,
    *,
    on_saved: Callable[[], None] | None = None,
    rerun: str | None = None,
) -> None:
    """Theirs vs mine per field with keep mine / take theirs (only when in conflict).

    Always one slot in the page, empty without a conflict: the elements after it keep
    their place in Streamlit's element tree whether a conflict is shown or not.
    Resolving finishes what met the conflict: after a Save, ``on_saved`` runs (the
    form closes, as `form_toolbar`'s Save does); after an Apply the form stays.
    ``rerun``: as `form_toolbar`'s.
    """
    conflict = form.conflict
    fid = form.form_id
    # An `st.empty` slot: drawing nothing in it clears what it held before.
    slot = st.empty()
    if conflict is None:
        return
    with slot.container(border=True, key=f"{fid}::conflict"):
        st.markdown(
            f"**Conflict** — version {conflict.their_version} was saved by someone else."
        )
        for name in conflict.fields:
            c1, c2, c3 = st.columns([2, 2, 2])
            c1.markdown(
                f"**{(labels or {}).get(name, name)}**  \ntheirs: `{conflict.theirs.get(name)!r}`"
            )
            c2.markdown(f"mine: `{conflict.mine.get(name)!r}`")
            c3.radio(
                "keep",
                ["mine", "theirs"],
                key=f"{fid}::pick::{name}",
                horizontal=True,
                label_visibility="collapsed",
            )

        def resolve(picks: Mapping[str, Literal["mine", "theirs"]]) -> None:
            note_trigger(st.session_state, "button")
            mode = conflict.mode
            if resolve_conflict(fid, saver, picks) and mode == "save" and on_saved:
                on_saved()

        def apply_choices() -> None:
            resolve(
                {
                    n: (
                        "theirs"
                        if st.session_state.get(f"{fid}::pick::{n}") == "theirs"
                        else "mine"
                    )
                    for n in conflict.fields
                }
            )

        def keep_all_mine() -> None:
            resolve(dict.fromkeys(conflict.fields, "mine"))

        def take_all_theirs() -> None:
            resolve(dict.fromkeys(conflict.fields, "theirs"))

        b1, b2, b3 = st.columns(3)
        b1.button(
            "Apply my choices",
            key=f"{fid}::resolve",
            on_click=_then_rerun(apply_choices, rerun),
        )
        b2.button(
            "Keep all mine",
            key=f"{fid}::mine",
            on_click=_then_rerun(keep_all_mine, rerun),
        )
        b3.button(
            "Take all theirs",
            key=f"{fid}::theirs",
            on_click=_then_rerun(take_all_theirs, rerun),
        )
