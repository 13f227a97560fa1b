"""End-to-end: a field's "● modified" note, its form's unsaved marker and which of the
form's Undo/Redo/Apply/Reset can be pressed are drawn by the browser at once, before the
server answers, and the server's next run takes them back.

Proved with the UI server frozen (SIGSTOP): nothing the server draws can change the
page then, yet each click on "Public" flips its note and the form's marker at once;
thawed, the server's own notes replace the browser's, saying the same.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from ballast_ui.widgets import widget_css_class
from tests.e2e.conftest import Proc, no_exception, ui_proc
from tests.e2e.test_zero_loss import (  # noqa: F401 (_patient: autouse)
    PATIENCE_MS,
    _patient,
    open_project,
    toggle,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# "At once": well under any server round trip, yet not a timing test (the server is
# frozen: it cannot answer at all while this is checked).
AT_ONCE_MS = 3_000


@pytest.fixture(scope="module")
def ui(api_server: Proc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """A ui process of this module's own (the test freezes it)."""
    proc = ui_proc(
        "ui-notes", api_server, tmp_path_factory.mktemp("e2e-notes") / "ui.log"
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _note(page: Page, pid: str, field: str) -> Locator:
    """The note slot drawn right after a field's widget."""
    cls = widget_css_class(f"project.{pid}.{field}")
    return page.locator(f".{cls}").locator("xpath=following-sibling::*[1]")


def _shown(locator: Locator) -> str:
    """What the slot shows: the browser's text (its ::after) over the server's."""
    return str(locator.evaluate("""(el) => {
              const p = el.querySelector('p');
              if (!p) return '';
              const after = getComputedStyle(p, '::after').content;
              if (after && after !== 'none' && after !== 'normal')
                return JSON.parse(after.startsWith('"') ? after : JSON.stringify(after));
              return getComputedStyle(p).visibility === 'hidden' ? '' : p.textContent;
            }""")).strip()


def _buttons(page: Page, pid: str) -> dict[str, Locator]:
    """The project form's Undo, Redo, Apply and Reset buttons (a button with a
    tooltip has a hidden copy beside it, for its width)."""
    return {
        name: page.locator(
            f".{widget_css_class(f'project.{pid}::{name}')} button:visible"
        )
        for name in ("undo", "redo", "apply", "reset")
    }


def _expect_enabled(buttons: dict[str, Locator], timeout: float, **on: bool) -> None:
    for name, enabled in on.items():
        if enabled:
            expect(buttons[name]).to_be_enabled(timeout=timeout)
        else:
            expect(buttons[name]).to_be_disabled(timeout=timeout)


def test_notes_are_drawn_in_the_browser_at_once(
    context: BrowserContext, ui: Proc, new_project: Callable[..., str]
) -> None:
    pid = new_project("E2E instant notes")
    page = context.new_page()
    page.set_default_timeout(PATIENCE_MS)
    open_project(page, ui.health_url.removesuffix("/_stcore/health"), pid)
    box = page.locator(".st-key-bpage-projects")
    note = _note(page, pid, "is_public")
    marker = page.locator(f".{widget_css_class(f'project.{pid}::marker')}")
    expect(box.get_by_text("✓ no unsaved changes")).to_be_visible()
    expect(note).to_have_count(1)
    assert _shown(note) in ("", "\xa0")
    buttons = _buttons(page, pid)
    # A new project: nothing to undo, redo, apply or reset.
    _expect_enabled(
        buttons, PATIENCE_MS, undo=False, redo=False, apply=False, reset=False
    )

    assert ui.proc is not None
    os.kill(ui.proc.pid, signal.SIGSTOP)
    try:
        for want_note, want_marker in (
            ("● modified", "● 1 unsaved"),
            ("", "✓ no unsaved changes"),
            ("● modified", "● 1 unsaved"),
        ):
            toggle(page, "Public")
            expect(note).to_have_attribute(
                "data-bnote", "modified" if want_note else "clean", timeout=AT_ONCE_MS
            )
            expect(marker).to_have_attribute(
                "data-btext", want_marker, timeout=AT_ONCE_MS
            )
            assert _shown(note) == want_note
            assert _shown(marker) == want_marker
            # Back at the value the server holds, the buttons are as it drew them.
            changed = bool(want_note)
            _expect_enabled(
                buttons,
                AT_ONCE_MS,
                undo=changed,
                redo=False,
                apply=changed,
                reset=changed,
            )
    finally:
        os.kill(ui.proc.pid, signal.SIGCONT)

    # The server answers: its own note and marker, the browser's guesses gone.
    expect(note).not_to_have_attribute("data-bnote", "modified")
    expect(marker).not_to_have_attribute("data-btext", "● 1 unsaved")
    expect(note).to_contain_text("● modified")
    expect(marker).to_contain_text("● 1 unsaved")
    assert _shown(note) == "● modified"
    _expect_enabled(buttons, PATIENCE_MS, undo=True, redo=False, apply=True, reset=True)
    no_exception(page)


def test_an_undo_enabled_by_the_browser_undoes_the_change(
    context: BrowserContext, ui: Proc, new_project: Callable[..., str]
) -> None:
    """Undo pressed before the server answered the change: the server gets the change
    first, then the click, and undoes it; Redo then brings it back."""
    pid = new_project("E2E early undo")
    page = context.new_page()
    page.set_default_timeout(PATIENCE_MS)
    open_project(page, ui.health_url.removesuffix("/_stcore/health"), pid)
    box = page.locator(".st-key-bpage-projects")
    expect(box.get_by_text("✓ no unsaved changes")).to_be_visible()
    buttons = _buttons(page, pid)
    expect(buttons["undo"]).to_be_disabled()
    public = page.locator(f".{widget_css_class(f'project.{pid}.is_public')} input")
    expect(public).not_to_be_checked()

    assert ui.proc is not None
    os.kill(ui.proc.pid, signal.SIGSTOP)
    try:
        toggle(page, "Public")
        expect(buttons["undo"]).to_be_enabled(timeout=AT_ONCE_MS)
        buttons["undo"].click()
    finally:
        os.kill(ui.proc.pid, signal.SIGCONT)

    expect(public).not_to_be_checked()
    expect(box.get_by_text("✓ no unsaved changes")).to_be_visible()
    _expect_enabled(
        buttons, PATIENCE_MS, undo=False, redo=True, apply=False, reset=False
    )
    buttons["redo"].click()
    expect(public).to_be_checked()
    expect(box.get_by_text("● 1 unsaved")).to_be_visible()
    _expect_enabled(buttons, PATIENCE_MS, undo=True, redo=False, apply=True)
    no_exception(page)


# Hold back the journal's own timed re-readings (setTimeout(scan, ms)) from now on: what
# the page shows then was drawn on the widget's change itself. Installed outermost, over
# the journal's own wrapper of setTimeout (lib/edit_timers.js), so it sees `scan` itself.
HOLD_SCANS = """() => {
  const inner = window.setTimeout;
  window.__heldScans = [];
  window.__releaseScans = () => { window.setTimeout = inner; };
  window.setTimeout = function (fn, ms, ...args) {
    if (fn === window.__ballastScan) {
      window.__heldScans.push(ms);
      return 0;
    }
    return inner.call(this, fn, ms, ...args);
  };
}"""


def test_a_note_is_drawn_when_the_widget_is_drawn_not_by_a_timer(
    context: BrowserContext, ui: Proc, new_project: Callable[..., str]
) -> None:
    """The tick of a checkbox is drawn by React a little after the click: the journal
    reads it then (it watches the widget), not at its next timed re-reading. Before,
    the note waited for the re-reading 40 ms later: half the interaction time."""
    pid = new_project("E2E note on draw")
    page = context.new_page()
    page.set_default_timeout(PATIENCE_MS)
    open_project(page, ui.health_url.removesuffix("/_stcore/health"), pid)
    box = page.locator(".st-key-bpage-projects")
    note = _note(page, pid, "is_public")
    marker = page.locator(f".{widget_css_class(f'project.{pid}::marker')}")
    expect(box.get_by_text("✓ no unsaved changes")).to_be_visible()

    assert ui.proc is not None
    os.kill(ui.proc.pid, signal.SIGSTOP)
    try:
        page.evaluate(HOLD_SCANS)
        # On the label's text, as a user clicks it (the input itself is hidden): no
        # input or change event, only the click React handles after the journal saw it.
        page.locator(f".{widget_css_class(f'project.{pid}.is_public')} label p").click()
        expect(note).to_have_attribute("data-bnote", "modified", timeout=AT_ONCE_MS)
        expect(marker).to_have_attribute("data-btext", "● 1 unsaved")
        # The timed re-readings were asked for, and held: they drew none of it.
        assert page.evaluate("window.__heldScans.length") > 0
        page.evaluate("window.__releaseScans()")
    finally:
        os.kill(ui.proc.pid, signal.SIGCONT)
    expect(note).to_contain_text("● modified")
    expect(marker).to_contain_text("● 1 unsaved")
    no_exception(page)
