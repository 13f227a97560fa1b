"""A form's fragment nested in its page's fragment (ballast_ui.fragments): what each
run drew is booked per fragment, a page run without the form forgets the form's widgets,
and the form's buttons rerun the whole page."""

from __future__ import annotations

import types
from typing import Any

import pytest
from prometheus_client import REGISTRY

from ballast_ui import forms, fragments, widgets
from ballast_ui.client import ApiUnavailable
from ballast_ui.metrics import TRIGGER_KEY
from ballast_ui.router import FULL_RERUN


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


class _Fragment:
    """Stands in for Streamlit in `fragments`: the session, warnings, app reruns."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.state: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.journals: list[str] = []
        self.reruns: list[str] = []
        self.st = types.SimpleNamespace(
            session_state=self.state,
            warning=self.warnings.append,
            rerun=self._rerun,
        )
        monkeypatch.setattr(fragments, "st", self.st)
        monkeypatch.setattr(fragments, "draw_journal", self.journals.append)
        monkeypatch.setattr(fragments, "nest_in_page", lambda: None)
        # A fragment "built" here runs its body at once, as Streamlit's does when drawn.
        monkeypatch.setattr(fragments, "fragment_for", lambda _key, draw: draw)

    def _rerun(self, scope: str = "fragment") -> None:
        self.reruns.append(scope)
        raise _RerunAsked


class _RerunAsked(Exception):
    pass


def _reruns_timed(page: str, trigger: str) -> float:
    value = REGISTRY.get_sample_value(
        "ballast_ui_rerun_seconds_count", {"page": page, "trigger": trigger}
    )
    return value or 0.0


def _api_away() -> None:
    raise ApiUnavailable("the api is away")


def test_a_form_rerun_alone_is_timed_under_its_page_and_warns_when_the_api_is_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _Fragment(monkeypatch)
    before = _reruns_timed("projects", "widget")
    fragments.form_fragment("projects", "projects-form", _api_away)
    assert _reruns_timed("projects", "widget") == before + 1
    assert fake.warnings == ["The server is unreachable; your edits are kept."]
    assert fake.journals == ["projects-form"]  # the run still ends with its journal


def test_a_form_drawn_by_its_page_run_is_part_of_that_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _Fragment(monkeypatch)
    fake.state[widgets.IN_PAGE_RUN] = "page"
    drawn: list[str] = []
    before = _reruns_timed("projects", "widget")
    fragments.form_fragment("projects", "projects-form", lambda: drawn.append("form"))
    assert drawn == ["form"]
    assert fake.journals == ["projects-form"]
    assert _reruns_timed("projects", "widget") == before  # the page's run times it


def test_a_page_change_asked_by_a_callback_reruns_the_whole_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _Fragment(monkeypatch)
    fake.state[FULL_RERUN] = True
    with pytest.raises(_RerunAsked):
        fragments.run_fragment("projects", "projects", _api_away, part_of="none")
    assert fake.reruns == ["app"]
    assert FULL_RERUN not in fake.state


def test_a_page_run_on_its_own_is_timed_with_its_trigger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _Fragment(monkeypatch)
    fake.state[TRIGGER_KEY] = "nav"
    before = _reruns_timed("settings", "nav")
    drawn: list[str] = []
    fragments.run_fragment(
        "settings",
        "settings",
        lambda: drawn.append("page"),
        part_of=widgets.IN_FULL_RUN,
    )
    assert drawn == ["page"]
    assert fake.journals == ["settings"]
    assert _reruns_timed("settings", "nav") == before + 1
    # Drawn by a full run, it is that run's part: not timed on its own.
    fake.state[widgets.IN_FULL_RUN] = True
    fragments.run_fragment(
        "settings", "settings", drawn.clear, part_of=widgets.IN_FULL_RUN
    )
    assert _reruns_timed("settings", "nav") == before + 1
