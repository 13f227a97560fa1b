"""A form's fragment nested in its page's fragment (ballast_ui.fragments): what each
run drew is booked per fragment, a page run without the form forgets the form's widgets,
and the form's buttons rerun the whole page."""

from __future__ import annotations

import types
from typing import Any

import pytest

from ballast_ui import forms, widgets


class _Runs:
    """Stands in for Streamlit's run context: which run, which fragment draws."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.state: dict[str, Any] = {}
        self.now: tuple[object, str | None] = (object(), None)
        monkeypatch.setattr(
            widgets, "st", types.SimpleNamespace(session_state=self.state)
        )
        monkeypatch.setattr(widgets, "current_run", lambda: self.now)

    def page_run(self, *, form: bool) -> dict[str, bool]:
        """One run of the page's fragment; with `form`, the form's fragment runs in it
        (as part of it). Whether each form widget was drawn in the run before."""
        run = object()
        self.now = (run, "page")
        self.state[widgets.IN_PAGE_RUN] = "page"
        widgets.touch_fragment()
        seen = {}
        if form:
            seen = self._form(run)
            self.now = (run, "page")
        self.state.pop(widgets.IN_PAGE_RUN)
        widgets.fragment_done()
        return seen

    def form_run(self) -> dict[str, bool]:
        """A rerun of the form's fragment alone (a field of it changed)."""
        return self._form(object())

    def _form(self, run: object) -> dict[str, bool]:
        self.now = (run, "form")
        widgets.nest_in_page()
        seen = {key: widgets._seen(key) for key in ("f.name", "f.public")}
        widgets.fragment_done()
        return seen


def test_the_form_rerun_alone_knows_its_widgets_are_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = _Runs(monkeypatch)
    # The first run draws everything anew; later runs of the form, in the page or
    # alone, find its widgets drawn by the run before.
    assert runs.page_run(form=True) == {"f.name": False, "f.public": False}
    assert runs.form_run() == {"f.name": True, "f.public": True}
    assert runs.form_run() == {"f.name": True, "f.public": True}
    assert runs.page_run(form=True) == {"f.name": True, "f.public": True}


def test_a_page_run_without_the_form_makes_its_widgets_new(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = _Runs(monkeypatch)
    runs.page_run(form=True)
    runs.form_run()
    # The page shows the list: the form's widgets are gone from the browser ...
    runs.page_run(form=False)
    # ... so the next run of the form gives each its value again.
    assert runs.page_run(form=True) == {"f.name": False, "f.public": False}
    assert runs.form_run() == {"f.name": True, "f.public": True}


def test_a_form_run_cut_short_does_not_count(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _Runs(monkeypatch)
    runs.page_run(form=True)
    # A rerun of the form that never completed (another rerun cut in): what it drew
    # may not have reached the browser, so the next run gives every widget its value.
    runs.now = (object(), "form")
    widgets.nest_in_page()
    widgets._seen("f.name")
    assert runs.form_run() == {"f.name": False, "f.public": False}
    assert runs.form_run() == {"f.name": True, "f.public": True}


def test_the_form_buttons_rerun_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def rerun(scope: str) -> None:
        calls.append(("rerun", scope))
        raise RuntimeError("halt")  # st.rerun ends the callback

    monkeypatch.setattr(forms.st, "rerun", rerun)

    def undo(form_id: str) -> None:
        calls.append(("undo", form_id))

    assert forms._then_rerun(undo, None) is undo
    with pytest.raises(RuntimeError, match="halt"):
        forms._then_rerun(undo, "page-projects")("project.1")
    assert calls == [("undo", "project.1"), ("rerun", "page-projects")]
