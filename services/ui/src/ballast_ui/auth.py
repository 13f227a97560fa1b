"""Session token hand-off between the Streamlit session and the browser's cookie jar.

The token must survive a refresh and reach new tabs, but never appear in a URL, a
log, or page JavaScript. After a login the Streamlit session (Python) holds the token
and asks the api for a one-time, short-lived nonce (`POST /v1/sessions/handoffs`);
the browser bridge posts the nonce to ``/_ballast/session`` (a route of the ui), which
trades it at the api (`redeem`) and answers with an ``HttpOnly`` cookie holding the
token. Every later Streamlit session of that browser reads the cookie from its initial
request (``st.context.cookies``).

The nonce lives in the api's database, not in this process: the post may reach any ui
replica (no session affinity needed), and a nonce is redeemed at most once.

Single sign-on begins at ``/_ballast/sso`` (`begin_sso`): a random secret goes to the
api, which seals its hash into the OIDC state, and into the browser's ``ballast_sso``
cookie (HttpOnly, SameSite=Lax so that it comes back with the provider's top-level
redirect). The redirect back finishes only with that cookie: code and state an attacker
obtained for their own account do not sign a victim's browser in (login CSRF).
"""

from __future__ import annotations

import httpx

from ballast_common.contracts import HandoffToken, OidcAuthorization, OidcBegin

COOKIE_NAME = "ballast_session"
# The secret of the browser that began a single sign-on (see the module docstring).
SSO_COOKIE = "ballast_sso"


async def begin_sso(api_url: str, binding: str, *, timeout_s: float = 5.0) -> str:
    """The provider's authorization URL for a sign-in bound to the secret `binding`.

    Raises:
        LookupError: Single sign-on is not configured (the api's 404).
        httpx.HTTPError: The api (or the provider behind it) is unreachable or failed.
    """
    url = api_url.rstrip("/") + "/v1/sessions/oidc/authorize"
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        resp = await client.post(url, json=OidcBegin(binding=binding).model_dump())
    if resp.status_code == 404:
        raise LookupError("single sign-on is not configured")
    resp.raise_for_status()
    return OidcAuthorization.model_validate(resp.json()).authorization_url


async def redeem(
    api_url: str, nonce: str, *, timeout_s: float = 5.0
) -> tuple[str, int] | None:
    """Trade a hand-off nonce for ``(token, cookie max-age)`` at the api, once.

    Returns:
        ``None`` for an unknown, used or expired nonce.

    Raises:
        httpx.HTTPError: The api is unreachable.
    """
    url = api_url.rstrip("/") + "/v1/sessions/handoffs/redeem"
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        resp = await client.post(url, json={"nonce": nonce})
    if resp.status_code != 200:
        if resp.status_code >= 500:
            resp.raise_for_status()
        return None
    body = HandoffToken.model_validate(resp.json())
    return body.token, body.max_age_s
