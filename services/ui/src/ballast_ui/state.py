"""Per-browser-session state: who is logged in, widget values, the outbox.

Widget values live under our own key (``VALUES``), not only under the widget keys:
Streamlit deletes a widget's key when the widget is not rendered in a run. Every
change goes value store → outbox → api drafts (`persist_input`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import streamlit as st

from ballast_common.config import AppConfig, load_config
from ballast_common.errors import AppError, AuthenticationError
from ballast_common.telemetry import get_logger, log_error
from ballast_ui.auth import COOKIE_NAME, SSO_COOKIE
from ballast_ui.client import (
    ApiClient,
    ApiUnavailable,
    Session,
    SignInMethods,
    User,
    make_http,
)
from ballast_ui.events import sender
from ballast_ui.outbox import Outbox, OutboxPump
from ballast_ui.st_internals import session_id

log = get_logger(__name__)

VALUES = "_ballast_values"
CTX = "_ballast_ctx"
# Hooks run on every persisted change (forms record their undo history here).
CHANGE_HOOKS = "_ballast_change_hooks"
_UNSET = object()


@st.cache_resource
def get_config() -> AppConfig:
    """The process configuration (loaded once)."""
    return load_config()


@st.cache_resource
def get_http() -> httpx.Client:
    """The process-wide connection pool to the api."""
    return make_http(get_config().api_url)


@st.cache_resource
def get_pump() -> OutboxPump:
    """The process-wide outbox pump thread."""
    return OutboxPump()


@dataclass
class Ctx:
    """Everything a page needs about the current browser session."""

    api: ApiClient
    outbox: Outbox
    user: User | None = None
    # Set after a login in this session: the browser bridge turns it into a cookie.
    handoff: str | None = None
    # Set when the cookie is stale and must be removed (expired/revoked session).
    clear_cookie: bool = False
    drafts_loaded: bool = False
    notices: list[str] = field(default_factory=list)
    # Keys changed in this Streamlit session (`persist_input`): their value here is newer
    # than anything the browser journal held when it sent its restore (`apply_journal`).
    edited: set[str] = field(default_factory=set)

    @property
    def authenticated(self) -> bool:
        return self.user is not None

    def can(self, permission: str | None) -> bool:
        """Whether the user holds ``permission`` (``None``: any logged-in user)."""
        if self.user is None:
            return False
        return permission is None or self.user.can(permission)

    def may(self, resource: Any, action: str, permission: str) -> bool:
        """Whether to offer ``action`` ("write", "share", "delete") on ``resource``.

        The api decides per resource and says so in the resource's ``can`` list
        (owner, members, public projects: `ballast_api.policy`); the role's
        ``permission`` must hold too. A resource without ``can`` (from an api older
        than that field) falls back to the role alone. Hiding is a courtesy: the api
        refuses what is not allowed whatever the ui shows.
        """
        if not self.can(permission):
            return False
        can = getattr(resource, "can", None)
        return can is None or action in can


def values(state: MutableMapping[str, Any] | None = None) -> dict[str, Any]:
    """The session's widget value store (``{"{form_id}.{field}": value}``)."""
    target: Any = st.session_state if state is None else state
    store: dict[str, Any] | None = target.get(VALUES)
    if store is None:
        store = {}
        target[VALUES] = store
    return store


def get_ctx() -> Ctx:
    """The session context made by `bootstrap_session`."""
    ctx: Ctx | None = st.session_state.get(CTX)
    if ctx is None:
        ctx = bootstrap_session()
    return ctx


def on_change(hook: Callable[[str, Any, Any], None], name: str) -> None:
    """Register a hook ``hook(key, old, new)`` run on every persisted change."""
    hooks = st.session_state.setdefault(CHANGE_HOOKS, {})
    hooks[name] = hook


def track(ctx: Ctx, event: str, props: Mapping[str, Any] | None = None) -> None:
    """Record a Workbench event of the signed-in user (sent in the background by
    `ballast_ui.events`; the api stores and counts it). Signed out: nothing."""
    if ctx.user is not None:
        sender().track(ctx.api.post_events, event, props, session_id=session_id())


def persist_input(
    key: str, val: Any, *, record: bool = True, urgent: bool = False
) -> None:
    """Make a widget value durable: value store now, api drafts soon (outbox).

    Args:
        key: ``"{form_id}.{field}"``.
        val: The new value (JSON-serialisable).
        record: Whether change hooks (undo history) see this change.
        urgent: Send without waiting for the debounce (discrete changes: a select,
            a checkbox, a file; typing is debounced and coalesced).
    """
    store = values()
    old = store.get(key, _UNSET)
    if old == val:
        return  # no change: no draft, nothing to undo
    store[key] = val
    ctx = st.session_state.get(CTX)
    if ctx is not None:
        ctx.edited.add(key)
    if ctx is not None and ctx.user is not None:
        ctx.outbox.put(key, val, urgent=urgent)
    if record:
        for hook in list(st.session_state.get(CHANGE_HOOKS, {}).values()):
            hook(key, None if old is _UNSET else old, val)


def _make_outbox(api: ApiClient, config: AppConfig) -> Outbox:
    outbox = Outbox(api.put_drafts, debounce_s=config.performance.debounce_ms / 1000)
    get_pump().register(outbox)
    return outbox


def _authenticate(ctx: Ctx, token: str) -> None:
    try:
        ctx.user = ctx.api.with_token(token).me()
    except AuthenticationError:
        ctx.clear_cookie = True
        ctx.notices.append("Your session ended. Please sign in again.")
        return
    except ApiUnavailable:
        ctx.notices.append("The server is unreachable; retrying…")
        # Keep the token: the session may well still be valid once the api is back.
        st.session_state["_ballast_pending_token"] = token
        return
    ctx.api = ctx.api.with_token(token)
    ctx.outbox.set_send(ctx.api.put_drafts)
    ctx.outbox.owner = str(ctx.user.id)


def load_drafts(ctx: Ctx) -> None:
    """Load the user's drafts into the value store (once per session).

    Values already in the store (set in this session) win: they are newer.
    """
    if ctx.user is None or ctx.drafts_loaded:
        return
    # Another session of this user in this process (the tab before a refresh) may
    # still hold values on their way to the api: send them first, so the drafts
    # loaded here are the newest.
    get_pump().drain(str(ctx.user.id), exclude=ctx.outbox, timeout_s=3.0)
    try:
        drafts = ctx.api.get_drafts()
    except ApiUnavailable:
        return
    except AppError as exc:
        log_error(exc, {"where": "load_drafts"})
        return
    store = values()
    pending = ctx.outbox.pending_values()
    for d in drafts:
        key = f"{d.form_id}.{d.field}"
        ctx.outbox.seed_seq(key, d.seq)
        if key not in pending:
            store[key] = d.value
    ctx.drafts_loaded = True


def bootstrap_session() -> Ctx:
    """Set up a new Streamlit session, or return the one already set up.

    Identifies the user from the session cookie (never from the URL), loads their
    drafts from the api and starts the outbox. The browser journal's entries the api
    never acknowledged are merged later, when the bridge reports them
    (`apply_journal`). Page and params come from the URL (`Router.sync_from_url`).

    Returns:
        The session context.
    """
    ctx: Ctx | None = st.session_state.get(CTX)
    if ctx is None:
        config = get_config()
        api = ApiClient(get_http())
        ctx = Ctx(api=api, outbox=_make_outbox(api, config))
        st.session_state[CTX] = ctx
        token = st.context.cookies.get(COOKIE_NAME)
        if token:
            _authenticate(ctx, token)
    elif ctx.user is None and "_ballast_pending_token" in st.session_state:
        _authenticate(ctx, st.session_state.pop("_ballast_pending_token"))
    load_drafts(ctx)
    return ctx


def browser_address() -> str | None:
    """The browser's IP address as Streamlit saw it (None outside a session)."""
    try:
        address = st.context.ip_address
    except Exception:  # no script run context (tests, background threads)
        return None
    if not address:
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def login(ctx: Ctx, username: str, password: str) -> Session:
    """Log in through the api and hand the token to the browser's cookie.

    Raises:
        AuthenticationError: Wrong credentials.
        ApiUnavailable: The api is unreachable.
    """
    session = ctx.api.login(username, password, client_address=browser_address())
    return start_session(ctx, session)


def start_session(ctx: Ctx, session: Session) -> Session:
    """Adopt a session the api opened (password, OIDC or proxy sign-in)."""
    ctx.api = ctx.api.with_token(session.token)
    ctx.user = session.user
    ctx.clear_cookie = False
    try:
        ctx.handoff = ctx.api.create_handoff().nonce
    except ApiUnavailable:
        # Signed in for this tab all the same; only a refresh would ask again.
        ctx.handoff = None
        log.warning("handoff_unavailable", user_id=str(session.user.id))
    ctx.outbox.set_send(ctx.api.put_drafts)
    ctx.outbox.owner = str(session.user.id)
    ctx.drafts_loaded = False
    ctx.edited.clear()
    ctx.notices.clear()
    load_drafts(ctx)
    log.info("login", user_id=str(session.user.id))
    track(ctx, "workbench.signed_in")
    return session


_METHODS = "_ballast_sign_in_methods"


def sign_in_methods(ctx: Ctx) -> SignInMethods:
    """How users may sign in (asked once per browser session; passwords while unknown)."""
    cached = st.session_state.get(_METHODS)
    if isinstance(cached, SignInMethods):
        return cached
    try:
        methods = ctx.api.sign_in_methods()
    except AppError:
        # Not cached: the next run asks again.
        return SignInMethods(password=True, oidc=False, proxy=False)
    st.session_state[_METHODS] = methods
    return methods


# Where the single sign-on button leads: the ui's own route (relative to the app's
# address, so any base path works), which binds the sign-in to this browser.
SSO_START = "_ballast/sso"


def browser_cookie(name: str) -> str | None:
    """A cookie of this session's initial request (None outside a session)."""
    try:
        value = st.context.cookies.get(name)
    except (AttributeError, RuntimeError):
        return None
    return value if isinstance(value, str) and value else None


# Query parameters an OIDC provider sends back to the redirect URI.
_OIDC_PARAMS = ("code", "state", "session_state", "iss", "error", "error_description")


def finish_external_sign_in(ctx: Ctx, config: AppConfig) -> str | None:
    """Sign in from what arrived with this browser session, before the router reads the URL.

    An OIDC provider's redirect (``?code=&state=``, taken off the URL at once) is handed to
    the api, which verifies it; with trusted-header mode on, the authenticating proxy's
    identity headers of this session's request are relayed to the api, which believes
    them only from its trusted proxies (this ui pod). The ui decides nothing.

    Returns:
        A message for the sign-in page when a sign-in failed, else ``None``.
    """
    query = st.query_params
    sent = {k: query.get(k) for k in _OIDC_PARAMS if k in query}
    for k in sent:
        del query[k]
    try:
        if sent.get("error"):
            return f"Single sign-on did not complete: {sent['error']}."
        if sent.get("code") and sent.get("state"):
            binding = browser_cookie(SSO_COOKIE)
            if binding is None:
                return (
                    "Single sign-on must finish in the browser that started it "
                    "(its sign-in cookie is missing or expired): please start again."
                )
            session = ctx.api.oidc_sign_in(
                str(sent["code"]),
                str(sent["state"]),
                binding,
                client_address=browser_address(),
            )
            start_session(ctx, session)
            return None
        proxy = config.auth.proxy
        if proxy.enabled:
            headers = _request_headers()
            if headers.get(proxy.user_header):
                names = (
                    proxy.user_header,
                    proxy.email_header,
                    proxy.groups_header,
                    proxy.name_header,
                )
                identity = {n: str(headers[n]) for n in names if headers.get(n)}
                session = ctx.api.proxy_sign_in(
                    identity, client_address=browser_address()
                )
                start_session(ctx, session)
    except AppError as exc:
        log.info("external_sign_in_failed", error=exc.code)
        return exc.message
    return None


def _request_headers() -> Mapping[str, str]:
    """This session's initial request headers (names case-insensitive)."""
    try:
        return st.context.headers
    except Exception:  # no script run context (tests, background threads)
        return {}


def logout(ctx: Ctx, *, everywhere: bool = False) -> None:
    """End the session on the api and forget the user here; pending values flush first.

    ``everywhere``: end all of the user's sessions (every browser and device), not only
    this one.
    """
    ctx.outbox.wait_idle(2.0)
    try:
        if everywhere:
            ctx.api.logout_everywhere()
        else:
            ctx.api.logout()
    except AppError as exc:
        log.warning("logout_failed", error=type(exc).__name__, everywhere=everywhere)
    ctx.user = None
    ctx.api = ctx.api.with_token(None)
    ctx.clear_cookie = True
    ctx.handoff = None
    values().clear()
    ctx.drafts_loaded = False


def apply_journal(ctx: Ctx, entries: dict[str, Any]) -> list[str]:
    """Re-apply browser-journal entries the api never acknowledged.

    They are newer than any draft by definition (the browser only keeps what was not
    acknowledged), so they win without any clock comparison; but not over a key changed
    in this session (`Ctx.edited`): the browser took its list before the restore
    arrived, and a change made meanwhile (a second pick right after the first, on a
    page just opened) must not be put back to the value before it.

    Returns:
        The keys whose value changed.
    """
    changed = []
    store = values()
    by_class: dict[str, Any] = st.session_state.get("_ballast_journal_keys", {})
    for raw, value in entries.items():
        key: Any = raw
        if isinstance(raw, str) and raw.startswith("cls:"):
            # Typing journaled before the browser knew the widget's key.
            meta = by_class.get(raw[4:])
            key = meta.get("key") if isinstance(meta, dict) else None
        if not isinstance(key, str) or "." not in key or key in ctx.edited:
            continue
        if store.get(key) != value:
            changed.append(key)
        # The widget picks the new value up from the store when it is drawn next.
        store[key] = value
        if ctx.user is not None:
            ctx.outbox.put(key, value, urgent=True)
    return changed
