"""The Workbench frame: header, status badge, navigation and the page containers.

Navigation is done in the browser. Every page the user may use is rendered into its own
keyed container (``bpage-<name>``), each inside its own fragment; CSS shows only the
container named by ``body[data-bpage]``, which the nav element switches on click before
telling the server. Measured in Chromium on this machine against `st.navigation`
(3 pages, click → new heading painted, in-page timing, same run): st.navigation 154 /
278 ms p50 / p95, a fragment-swap frame 161-196 / 275-307 ms, this scheme 22 / 77 ms.
Interactions inside a page rerun only that page's fragment.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from ballast_common.errors import AppError, AuthenticationError
from ballast_common.telemetry import configure_logging, log_error
from ballast_ui import components
from ballast_ui.cache import ui_cache
from ballast_ui.client import ApiUnavailable, RateLimited
from ballast_ui.fragments import (
    fragment_for,
    page_fragment_key,
    page_run,
    run_fragment,
)
from ballast_ui.i18n import BLANK, t, theme_css
from ballast_ui.metrics import RERUN_SECONDS, end_action, take_trigger, timed_run
from ballast_ui.pages import ALL_PAGES
from ballast_ui.pages.jobs import job_toasts
from ballast_ui.router import DENIED, FULL_RERUN, NOT_FOUND, Page, Router
from ballast_ui.state import (
    SSO_START,
    Ctx,
    apply_journal,
    bootstrap_session,
    finish_external_sign_in,
    get_config,
    login,
    logout,
    sign_in_methods,
    track,
)
from ballast_ui.widgets import IN_FULL_RUN, journal_meta

VIEW = "_ballast_view::"
PRELOADED = "_ballast_preloaded"
# How long into a session its full runs draw the preload (see `_preload`): every run,
# not only the first, so the elements stay until their code has arrived on a slow link.
PRELOAD_S = 20.0
ACKS = "_ballast_acks"

# Fixed geometry: the header and the badge never change size; hidden pages take no space.
# Streamlit wraps a keyed container in a layout wrapper: hiding only the container left
# the wrapper in the flow, one flex gap (16 px) each, so a page's title sat lower by the
# number of pages before it. Both are hidden; `_page_css` shows the current page's.
BASE_CSS = """
[class*="st-key-bpage-"], [class*="st-key-bjournal-"],
[data-testid="stLayoutWrapper"]:has(> [class*="st-key-bpage-"]),
[data-testid="stLayoutWrapper"]:has(> [class*="st-key-bjournal-"]) { display: none !important; }
.st-key-b-header { min-height: 3rem; max-height: 3rem; overflow: hidden; }
.st-key-b-status { min-width: 17rem; max-width: 17rem; height: 1.75rem; min-height: 1.75rem;
  max-height: 1.75rem; white-space: nowrap; overflow: hidden; justify-content: center; }
.st-key-b-status p { margin: 0; line-height: 1.75rem; }
[data-bnote] [data-testid="stCaptionContainer"] p, [data-btext] p {
  visibility: hidden; position: relative; }
[data-bnote="modified"] [data-testid="stCaptionContainer"] p::after, [data-btext] p::after {
  visibility: visible; position: absolute; left: 0; top: 0; white-space: nowrap; }
[data-bnote="modified"] [data-testid="stCaptionContainer"] p::after {
  content: "● modified"; color: rgb(226, 102, 12); }
[data-btext] p::after { content: var(--btext); }
[data-btone="orange"] p::after { color: rgb(226, 102, 12); }
[data-btone="green"] p::after { color: rgb(21, 130, 55); }
button:focus-visible, input:focus-visible, textarea:focus-visible, a:focus-visible,
[role="button"]:focus-visible, [role="combobox"]:focus-visible {
  outline: 2px solid #1c64f2 !important; outline-offset: 2px; }
"""

# While the app loads, a page shows once every element in it is loaded: Streamlit draws
# a 40 px skeleton while an element's code is fetched the first time, and the real
# element then pushes everything below it down. The page appears complete instead. The
# nav element marks the load over (``body[data-bloaded]``); this rule outranks the one
# showing the current page.
LOADING_CSS = """
html body:not([data-bloaded]) [class*="st-key-bpage-"]:has([data-testid="stSkeleton"]) {
  display: none !important; }
"""

# Signed in, the app has a sidebar: the main area stays invisible until the sidebar is
# there (so it never moves sideways when the sidebar arrives after it).
SIDEBAR_FIRST_CSS = """
[data-testid="stAppViewContainer"]:not(:has([data-testid="stSidebar"]))
  [data-testid="stMain"] { visibility: hidden; }
"""


def router() -> Router:
    """The app's router over every Workbench page."""
    return Router(ALL_PAGES, default="home")


def _shown(page: str) -> str:
    """Selector of page ``page``'s container and of its layout wrapper."""
    box = f".st-key-bpage-{page}"
    return f'{box}, [data-testid="stLayoutWrapper"]:has(> {box})'


def _page_css(names: list[str], current: str, extra: str = "") -> str:
    shown = "".join(
        f'body[data-bpage="{n}"] :is({_shown(n)}) {{ display: flex !important; }}'
        for n in names
    )
    first = (
        f"body:not([data-bpage]) :is({_shown(current)}) {{ display: flex !important; }}"
    )
    return f"<style>{BASE_CSS}{shown}{first}{LOADING_CSS}{extra}</style>"


def _drawer(page: Page, ctx: Ctx, r: Router) -> Callable[[], None]:
    def draw() -> None:
        # The page draws into one of two slots, the other one an empty element. A new
        # view (see `Page.view`) takes the other slot: the old view is replaced by an
        # empty element at once, and the new one is drawn into a new container (a
        # container drawn where one was keeps its elements until each is replaced).
        # Both slots are sent before anything in them: Streamlit merges an empty
        # element and a container at the same place into the container alone.
        view, key = page.view(r), f"{VIEW}{page.name}"
        last, slot = st.session_state.get(key, (view, 0))
        if view != last:
            slot = 1 - slot
        slots = [st.container() if i == slot else st.empty() for i in (0, 1)]
        with slots[slot]:
            page.render(ctx, r)
        st.session_state[key] = (view, slot)

    def run() -> None:
        _run_page(page.name, draw)

    return run


def _run_page(name: str, draw: Callable[[], None]) -> None:
    """Body of a page fragment: part of a full run, or a timed run of its own."""
    run_fragment(name, name, draw, part_of=IN_FULL_RUN, wrap=page_run)


def _preload_due() -> bool:
    """Whether this run draws the preload: the session is younger than PRELOAD_S."""
    started = float(st.session_state.setdefault(PRELOADED, time.monotonic()))
    return time.monotonic() - started < PRELOAD_S


def _preload() -> None:
    """Draw, hidden, one element of every kind a page may show only later.

    Streamlit fetches an element kind's code the first time one is drawn and shows a
    40 px skeleton meanwhile; the real element then pushes everything below it down
    (e.g. the text area of the first project opened). Drawn by every full run in the
    first PRELOAD_S of a session, the sign-in page's included (signing in keeps the
    browser's page, and the code fetched for it), the code is fetched while the app
    loads: its load is over (``body[data-bloaded]``) only once these skeletons are
    gone, and until then a page holding a skeleton is hidden (LOADING_CSS). Later runs
    draw them no more; their code stays in the page.
    """
    rows = pd.DataFrame({"a": [1]})
    st.text_area("preload", key="b-preload-area", disabled=True)
    st.number_input("preload", key="b-preload-number", disabled=True)
    st.selectbox("preload", ["a"], key="b-preload-select", disabled=True)
    st.multiselect("preload", ["a"], key="b-preload-multi", disabled=True)
    st.slider("preload", 0, 1, key="b-preload-slider", disabled=True)
    st.date_input("preload", None, key="b-preload-date", disabled=True)
    st.checkbox("preload", key="b-preload-check", disabled=True)
    st.segmented_control("preload", ["a"], key="b-preload-seg", disabled=True)
    st.data_editor(rows, key="b-preload-editor", disabled=True)
    st.progress(0.0)
    st.code("", language="json")
    st.metric("preload", 0)
    st.bar_chart(rows)


def _status(ctx: Ctx) -> None:
    """The badge and the browser bridge (polled: the outbox works in the background)."""
    if not st.session_state.get(IN_FULL_RUN) and st.session_state.pop(
        FULL_RERUN, False
    ):
        st.rerun(scope="app")
    status = ctx.outbox.status()
    color = {"saved": "green", "saving": "blue", "offline": "orange"}.get(
        status.state, "red"
    )
    with st.container(key="b-status"):
        # Signed out, nothing is saved: the sign-in page claims no save status.
        st.markdown(f":{color}[● {status.label}]" if ctx.user else BLANK)
    acks: dict[str, Any] = st.session_state.setdefault(ACKS, {})
    journaled = {m["key"] for m in journal_meta().values()}
    acks.update({k: v for k, v in ctx.outbox.take_acked().items() if k in journaled})

    def restore() -> None:
        pending = st.session_state["ballast_bridge"].restore
        if isinstance(pending, dict) and pending:
            apply_journal(ctx, pending)
            st.session_state[FULL_RERUN] = True

    components.bridge(
        user=str(ctx.user.id) if ctx.user else None,
        acks=acks,
        handoff=ctx.handoff,
        clear_cookie=ctx.clear_cookie,
        ready=ctx.user is not None and ctx.drafts_loaded,
        on_restore=restore,
    )


@st.fragment(run_every="1s")
def _status_fragment() -> None:
    ctx = st.session_state["_ballast_ctx"]
    if st.session_state.get(IN_FULL_RUN):
        _status(ctx)
        return
    with timed_run("status", "poll"):
        _status(ctx)


def _header(ctx: Ctx) -> None:
    with st.container(key="b-header"):
        title, badge, who = st.columns([5, 3, 2], vertical_alignment="center")
        title.markdown("**Ballast** · Workbench")
        with badge:
            _status_fragment()
        if ctx.user is not None:

            def do_logout() -> None:
                logout(ctx)

            who.button(
                f"{t(ctx, 'Sign out')} ({ctx.user.username})",
                key="b-logout",
                on_click=do_logout,
                type="tertiary",
            )


def throttled_text(retry_after: float | None) -> str:
    """What the sign-in page says when the api throttles sign-ins (429)."""
    if retry_after is None:
        return "Too many failed sign-ins; please wait a few minutes and try again."
    wait = max(1, math.ceil(retry_after))
    when = f"{wait} s" if wait < 120 else f"{math.ceil(wait / 60)} min"
    return f"Too many failed sign-ins; please try again in {when}."


def _login(ctx: Ctx) -> None:
    st.header("Sign in")
    for notice in ctx.notices:
        st.info(notice)
    methods = sign_in_methods(ctx)
    if methods.oidc:
        st.link_button(
            f"Sign in with {methods.oidc_label or 'single sign-on'}",
            SSO_START,
            type="primary",
            key="login::sso",
        )
    if not methods.password:
        return
    with st.form("login", border=True):
        username = st.text_input("Username", key="login::username")
        password = st.text_input("Password", type="password", key="login::password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            login(ctx, username, password)
        except AuthenticationError:
            st.error("Wrong username or password.")
            return
        except RateLimited as exc:
            st.error(throttled_text(exc.retry_after))
            return
        except ApiUnavailable:
            st.error("The server is unreachable; please try again in a moment.")
            return
        except AppError as exc:
            st.error(exc.message)
            return
        st.rerun()


# The page last recorded as viewed in this session (`workbench.page_viewed`).
_VIEWED = "_ballast_viewed"


def _viewed(ctx: Ctx, page: str) -> None:
    """Record a page view, once per change of page (not per rerun)."""
    if st.session_state.get(_VIEWED) != page:
        st.session_state[_VIEWED] = page
        track(ctx, "workbench.page_viewed", {"page": page})


def _nav(ctx: Ctx, r: Router, view: str) -> None:
    items = [
        {
            "name": p.name,
            "title": t(ctx, p.title),
            "icon": p.icon,
            "href": r.href(p.name),
        }
        for p in r.visible(ctx)
    ]

    def on_nav() -> None:
        page = st.session_state["ballast_nav"].nav
        if isinstance(page, str) and r.allowed(ctx, page):
            r.on_client_nav(page)
            _viewed(ctx, page)

    @st.fragment
    def nav_fragment() -> None:
        if st.session_state.get(IN_FULL_RUN):
            components.nav(items, view, on_nav)
            return
        with timed_run(r.current_page, take_trigger(st.session_state, "nav")):
            components.nav(items, r.resolve(ctx), on_nav)

    with st.sidebar:
        nav_fragment()


def main() -> None:
    """Render the whole app (one full script run)."""
    start = time.perf_counter()
    st.set_page_config(page_title="Ballast", page_icon="⚓", layout="wide")
    st.session_state[IN_FULL_RUN] = True
    try:
        first = "_ballast_ctx" not in st.session_state
        if first:
            cfg = get_config()
            configure_logging("ui", level=cfg.log_level, fmt=cfg.log_format)
            # The process's cache (L1, and Redis when configured: busts from the api
            # reach it), made by the first session.
            ui_cache(cfg)
        ctx = bootstrap_session()
        if not ctx.authenticated:
            # Before the router rewrites the URL: an OIDC redirect's code and state.
            problem = finish_external_sign_in(ctx, get_config())
            if problem:
                ctx.notices.append(problem)
        r = router()
        r.sync_from_url()
        st.session_state.pop(FULL_RERUN, None)
        view = r.resolve(ctx) if ctx.authenticated else "login"
        pages = r.visible(ctx) if ctx.authenticated else []
        names = [p.name for p in pages] + [DENIED, NOT_FOUND, "login"]
        if ctx.authenticated:
            _viewed(ctx, view)
            # The sidebar first: Streamlit draws each element as it arrives, and the
            # main area drawn before the sidebar exists moves 300 px when it appears.
            _nav(ctx, r, view)
        extra = SIDEBAR_FIRST_CSS if ctx.authenticated else ""
        st.html(_page_css(names, view, extra + theme_css(ctx)))
        _header(ctx)
        # The preload's place, right after the header in every full run (empty once
        # the preload is over): the sign-in page's run and the Workbench's that follows
        # it put it at the same index. Drawn last, it had the index a page container
        # takes after signing in, and its elements - a data editor among them - stayed
        # in that page, stale, until the run ended.
        with st.container(key="bpage-_preload"):
            if _preload_due():
                _preload()
        if not ctx.authenticated:
            with st.container(key="bpage-login"):
                _login(ctx)
        else:
            for page in pages:
                with st.container(key=f"bpage-{page.name}"):
                    fragment_for(page_fragment_key(page.name), _drawer(page, ctx, r))()
            with st.container(key=f"bpage-{DENIED}"):
                st.header(t(ctx, "Access denied"))
                st.write(
                    "Your role does not allow this page. Ask an administrator for access."
                )
            with st.container(key=f"bpage-{NOT_FOUND}"):
                st.header(t(ctx, "Page not found"))
                st.write("There is no such page.")
            # Toasts for my jobs finishing, on whatever page (draws nothing else).
            job_toasts()
    except Exception as exc:
        log_error(exc, {"where": "ui_main"})
        raise
    finally:
        st.session_state[IN_FULL_RUN] = False
    trigger = take_trigger(st.session_state, "app")
    if first:
        trigger = "bootstrap"
    RERUN_SECONDS.labels(page=r.current_page, trigger=trigger).observe(
        time.perf_counter() - start
    )
    end_action(r.current_page, trigger)
