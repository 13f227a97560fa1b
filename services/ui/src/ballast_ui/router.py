"""Router: current page and params in session state and in the URL.

The URL is ``?page=<name>&<param>=<value>...``. Every navigation writes it through
``st.query_params`` (Streamlit pushes a history entry when the query string changes).
A session's first run and every browser back/forward read it back, so deep links,
refresh, new tabs and history all land on the right page with its params. Other runs
leave the state alone: Streamlit sends its last known query string with each rerun, so
a run may carry the URL of a page the user has already left. Navigation between pages
is done in the browser by the nav element (all permitted pages are rendered and kept;
only the current one is shown), which then tells the server; `navigate` is the
server-side entry point.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlencode

import streamlit as st

from ballast_ui.metrics import note_trigger
from ballast_ui.st_internals import is_history_navigation
from ballast_ui.state import Ctx

_ROUTER = "_ballast_router"
_URL_READ = "_ballast_url_read"
FULL_RERUN = "_ballast_full_rerun"
HISTORY_LIMIT = 50
DENIED = "denied"
NOT_FOUND = "notfound"


def _history_navigation() -> bool:
    """Whether the current run was started by the browser's back/forward."""
    return is_history_navigation()


# The api's highest page number (it refuses a higher `page`).
MAX_PAGE = 1_000_000


def page_number(raw: str | None) -> int:
    """The list page named in the address: 1 for anything that is not a page number."""
    text = (raw or "").strip()
    if not (text.isascii() and text.isdigit()):
        return 1
    if len(text) > len(str(MAX_PAGE)):
        return MAX_PAGE
    return min(max(1, int(text)), MAX_PAGE)


class Page:
    """A page of the app: subclasses set the class attributes and implement `render`."""

    name: ClassVar[str]
    title: ClassVar[str]
    icon: ClassVar[str] = ""
    # Permission needed to see and use the page (None: any logged-in user).
    permission: ClassVar[str | None] = None
    # Params the page understands (others are dropped from the URL).
    params: ClassVar[tuple[str, ...]] = ()

    def render(self, ctx: Ctx, router: Router) -> None:
        """Draw the page into the current container."""
        raise NotImplementedError

    def view(self, router: Router) -> str:
        """Which of the page's views (e.g. a list, one item) the router's state selects.

        A change of view draws the page into a new, empty container: Streamlit would
        otherwise reuse the old view's elements in place, one by one, so what is left
        of them moves while the new view is drawn (default: the page has one view).
        """
        return ""


@dataclass
class RouterState:
    page: str
    params: dict[str, str] = field(default_factory=dict)
    history: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    # The last params each page had, so returning to a page restores them.
    params_by_page: dict[str, dict[str, str]] = field(default_factory=dict)


def query_string(page: str, params: Mapping[str, str]) -> str:
    """The query string (with ``?``) for ``page`` and ``params``."""
    return "?" + urlencode({"page": page, **params})


class Router:
    """Keeps ``current_page``, ``params`` and ``history``; see the module docstring.

    Args:
        pages: Every page of the app.
        default: The page shown for an empty URL.
        state: Where to keep the state (``st.session_state`` by default).
        history_navigation: Whether this run is a browser back/forward (default: as
            Streamlit's run context says).
    """

    def __init__(
        self,
        pages: Sequence[Page],
        default: str,
        state: MutableMapping[str, Any] | None = None,
        history_navigation: Callable[[], bool] | None = None,
    ) -> None:
        self.pages = {p.name: p for p in pages}
        self.default = default
        self._state_map: Any = st.session_state if state is None else state
        self._history_navigation = history_navigation or _history_navigation

    @property
    def state(self) -> RouterState:
        rs: RouterState | None = self._state_map.get(_ROUTER)
        if rs is None:
            rs = RouterState(self.default)
            self._state_map[_ROUTER] = rs
        return rs

    @property
    def current_page(self) -> str:
        return self.state.page

    @property
    def params(self) -> dict[str, str]:
        return dict(self.state.params)

    @property
    def history(self) -> list[tuple[str, dict[str, str]]]:
        return list(self.state.history)

    def allowed(self, ctx: Ctx, name: str) -> bool:
        """Whether the user may use page ``name``."""
        page = self.pages.get(name)
        return page is not None and ctx.can(page.permission)

    def visible(self, ctx: Ctx) -> list[Page]:
        """The pages in the navigation for this user."""
        return [p for p in self.pages.values() if ctx.can(p.permission)]

    def resolve(self, ctx: Ctx) -> str:
        """The view to show: the current page, ``denied`` or ``notfound``."""
        name = self.state.page
        if name not in self.pages:
            return NOT_FOUND
        if not self.allowed(ctx, name):
            return DENIED
        return name

    def _clean(self, page: str, params: Mapping[str, Any] | None) -> dict[str, str]:
        known = self.pages[page].params if page in self.pages else ()
        return {
            k: str(v)
            for k, v in (params or {}).items()
            if k in known and v is not None and str(v) != ""
        }

    def _set(self, page: str, params: dict[str, str]) -> bool:
        rs = self.state
        if (rs.page, rs.params) == (page, params):
            return False
        rs.history.append((rs.page, dict(rs.params)))
        del rs.history[:-HISTORY_LIMIT]
        rs.page, rs.params = page, params
        rs.params_by_page[page] = dict(params)
        return True

    def sync_from_url(self) -> bool:
        """Adopt page and params from the URL on the session's first run (deep link,
        refresh, new tab) and on browser back/forward; otherwise write the state to it.

        Returns:
            ``True`` if the state changed.
        """
        if self._state_map.get(_URL_READ) and not self._history_navigation():
            self.write_url()
            return False
        self._state_map[_URL_READ] = True
        qp = st.query_params.to_dict()
        page = qp.pop("page", None) or self.default
        params = self._clean(page, qp)
        changed = self._set(page, params)
        if changed:
            note_trigger(self._state_map, "history")
        self.write_url()
        return changed

    def write_url(self) -> None:
        """Write the current page and params to the URL (only if they differ)."""
        rs = self.state
        want = {"page": rs.page, **rs.params}
        if st.query_params.to_dict() != want:
            st.query_params.from_dict(want)

    def href(self, page: str) -> str:
        """The link to ``page`` with the params it had last."""
        return query_string(page, self.state.params_by_page.get(page, {}))

    def navigate(self, to: str, params: Mapping[str, Any] | None = None) -> None:
        """Go to page ``to`` with ``params`` (URL and history follow).

        From a widget callback inside a page, a change of page asks for one full
        rerun (callbacks cannot rerun the app themselves); a change of params only
        reruns the page's fragment.
        """
        clean = self._clean(
            to, params if params is not None else self.state.params_by_page.get(to)
        )
        before = self.state.page
        if self._set(to, clean):
            self.write_url()
            note_trigger(self._state_map, "nav")
            if to != before:
                self._state_map[FULL_RERUN] = True

    def update(self, page: str, params: Mapping[str, Any] | None) -> None:
        """Change ``page``'s params from one of its own widgets' ``on_change``.

        On the current page this is `navigate`. A page not shown cannot be used, so a
        change reported by one of its widgets (a widget re-reporting its value while the
        page is hidden) never takes the user there: the params are kept for the next
        visit.
        """
        if page != self.state.page:
            if page in self.pages:
                self.state.params_by_page[page] = self._clean(page, params)
            return
        self.navigate(page, params)

    def on_client_nav(self, page: str) -> None:
        """The browser already shows ``page``: record it (nav element callback)."""
        if page not in self.pages:
            return
        self._set(page, dict(self.state.params_by_page.get(page, {})))
        self.write_url()
        note_trigger(self._state_map, "nav")

    def set_params(self, **params: Any) -> None:
        """Change params of the current page (a new history entry)."""
        rs = self.state
        merged = {**rs.params, **params}
        self.navigate(rs.page, {k: v for k, v in merged.items() if v is not None})
