"""Single sign-on through a real OpenID Connect provider (tests/fixtures/oidc.py).

The api runs authorization code + PKCE and verifies the ID token itself; every bad
token, state or code is a 401 (never a 500), and roles come from the groups claim.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi.testclient import TestClient
from joserfc.jwk import KeySet
from sqlalchemy import select

from ballast_api.auth.oidc import OidcRefused, verify_id_token
from ballast_api.main import create_app
from ballast_common.config import OidcConfig
from ballast_common.db import DB, run_tx
from ballast_common.models import AuditLog, User, UserIdentity
from ballast_common.seed import seed_demo
from tests.api.conftest import PASSWORDS, _reset, make_config
from tests.fixtures.oidc import Provider

CLIENT_ID = "ballast-test"
SECRET = "test-client-secret-0123456789"
REDIRECT = "http://ui.test/"
GROUPS = {"ballast-editors": "editor", "ballast-admins": "admin"}


def oidc_settings(issuer: str, **extra: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "issuer": issuer,
        "client_id": CLIENT_ID,
        # A confidential client (the provider wants client authentication).
        "client_secret": SECRET,
        "redirect_uri": REDIRECT,
        "group_roles": GROUPS,
    } | extra


@pytest.fixture
def make_api(
    oidc_provider: Provider, seeded_dbs: dict[str, str], tmp_path: Path
) -> Iterator[Any]:
    """`make_api(backend="sqlite", oidc=..., auth=..., **config)`: the api with OIDC on."""
    opened: list[tuple[TestClient, DB]] = []

    def make(
        backend: str = "sqlite",
        oidc: dict[str, Any] | None = None,
        auth: dict[str, Any] | None = None,
    ) -> TestClient:
        db = DB(seeded_dbs[backend])
        _reset(db)
        run_tx(seed_demo, db=db)
        settings = {"oidc": oidc_settings(oidc_provider.issuer) | (oidc or {})}
        config = make_config(tmp_path, auth={**settings, **(auth or {})})
        client = TestClient(
            create_app(config=config, db=db), raise_server_exceptions=False
        )
        client.__enter__()
        opened.append((client, db))
        return client

    try:
        yield make
    finally:
        for client, db in opened:
            client.portal.call(db.adispose)  # type: ignore[union-attr]
            client.__exit__(None, None, None)
            db.dispose()


# The secret the browser that starts a sign-in keeps (the ui's HttpOnly cookie).
BROWSER = "b" * 43


def begin(client: TestClient, binding: str = BROWSER) -> str:
    resp = client.post("/v1/sessions/oidc/authorize", json={"binding": binding})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["authorization_url"])


def sign_in(client: TestClient, provider: Provider, sub: str) -> httpx.Response:
    start = client.post("/v1/sessions/oidc/authorize", json={"binding": BROWSER})
    assert start.status_code == 200, start.text
    url = start.json()["authorization_url"]
    query = parse_qs(urlsplit(url).query)
    # Authorization code + PKCE (S256), with a nonce and our state.
    assert query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [REDIRECT]
    assert len(query["nonce"][0]) >= 32
    assert query["state"][0]
    back = provider.authorize(url, sub)
    return client.post(
        "/v1/sessions/oidc",
        json={"code": back["code"], "state": back["state"], "binding": BROWSER},
    )


def audit_rows(client: TestClient, action: str) -> list[AuditLog]:
    db: DB = client.app.state.db  # type: ignore[attr-defined]
    with db.session() as session:
        return list(
            session.execute(
                select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)
            ).scalars()
        )


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
def test_code_and_pkce_flow_opens_a_session_with_the_mapped_role(
    make_api: Any, oidc_provider: Provider, backend: str
) -> None:
    client = make_api(backend)
    sub = f"carol-{uuid.uuid4().hex[:8]}"
    oidc_provider.set_user(
        sub,
        preferred_username=sub,
        email=f"{sub}@example.com",
        name="Carol Example",
        groups=["ballast-editors", "unrelated"],
    )
    resp = sign_in(client, oidc_provider, sub)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["user"]["username"] == sub
    assert body["user"]["roles"] == ["editor"]
    assert body["user"]["email"] == f"{sub}@example.com"
    assert resp.headers["cache-control"] == "no-store"
    me = client.get(
        "/v1/sessions/me", headers={"Authorization": f"Bearer {body['token']}"}
    )
    assert me.status_code == 200
    assert me.json()["display_name"] == "Carol Example"
    assert "projects:write" in me.json()["permissions"]
    created = audit_rows(client, "user_created")
    assert [r.new_values["username"] for r in created] == [sub]
    assert created[0].new_values["method"] == "oidc"
    logins = audit_rows(client, "login")
    assert logins[-1].new_values["method"] == "oidc"

    # The next sign-in finds the same user by (issuer, subject); new groups, new roles,
    # audited; the old session token sent along is rotated.
    oidc_provider.set_user(sub, preferred_username=sub, groups=["ballast-admins"])
    client.headers["Authorization"] = f"Bearer {body['token']}"
    again = sign_in(client, oidc_provider, sub)
    del client.headers["Authorization"]
    assert again.status_code == 201, again.text
    assert again.json()["user"]["id"] == body["user"]["id"]
    assert again.json()["user"]["roles"] == ["admin"]
    changes = [
        r for r in audit_rows(client, "update") if r.resource_id == body["user"]["id"]
    ]
    assert changes[-1].old_values["roles"] == ["editor"]
    assert changes[-1].new_values["roles"] == ["admin"]
    assert len(audit_rows(client, "session_rotated")) == 1
    old = client.get(
        "/v1/sessions/me", headers={"Authorization": f"Bearer {body['token']}"}
    )
    assert old.status_code == 401


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "someone-else"}, "aud"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nonce": "not-the-one-we-sent"}, "nonce"),
        ({"iss": "http://evil.test"}, "iss"),
        ({"aud": [CLIENT_ID, "other"], "azp": "other"}, "azp"),
    ],
)
def test_a_wrong_id_token_is_refused_with_401(
    make_api: Any, oidc_provider: Provider, claims: dict[str, Any], reason: str
) -> None:
    """Tokens validly signed by the provider, each wrong in one respect."""
    client = make_api()
    sub = f"mallory-{uuid.uuid4().hex[:8]}"
    oidc_provider.set_user(sub, groups=["ballast-admins"], **claims)
    resp = sign_in(client, oidc_provider, sub)
    assert resp.status_code == 401, resp.text
    assert resp.json()["code"] == "unauthenticated"
    assert reason in resp.json()["message"]
    assert audit_rows(client, "user_created") == []


def test_bad_state_and_code_are_refused_with_401(
    make_api: Any, oidc_provider: Provider
) -> None:
    client = make_api()
    sub = f"dave-{uuid.uuid4().hex[:8]}"
    oidc_provider.set_user(sub, groups=["ballast-editors"])
    back = oidc_provider.authorize(begin(client), sub) | {"binding": BROWSER}
    state = back["state"]
    tampered = state[:20] + ("A" if state[20] != "A" else "B") + state[21:]
    cases = [
        back | {"state": tampered},
        back | {"state": "not even base64"},
        back | {"code": "no-such-code"},
    ]
    for body in cases:
        resp = client.post("/v1/sessions/oidc", json=body)
        assert resp.status_code == 401, (body, resp.text)
    # The code still works once with its own state, then never again.
    assert client.post("/v1/sessions/oidc", json=back).status_code == 201
    assert client.post("/v1/sessions/oidc", json=back).status_code == 401
    # Another sign-in's code with this state: another PKCE verifier and nonce.
    other = oidc_provider.authorize(begin(client), sub)
    mixed = back | {"code": other["code"]}
    assert client.post("/v1/sessions/oidc", json=mixed).status_code == 401
    for bad in (back | {"code": "x" * 5000}, back | {"code": "c", "state": "\u0000"}):
        assert client.post("/v1/sessions/oidc", json=bad).status_code == 422


def test_a_sign_in_finishes_only_in_the_browser_that_began_it(
    make_api: Any, oidc_provider: Provider
) -> None:
    """Login CSRF: an attacker begins a sign-in as themself and sends the victim the
    provider's answer (code and state); the victim's browser lacks the attacker's
    secret, so the api refuses it and the victim is not signed in as the attacker."""
    client = make_api()
    sub = f"mallory-{uuid.uuid4().hex[:8]}"
    oidc_provider.set_user(sub, groups=["ballast-editors"])
    attacker = "a" * 43
    back = oidc_provider.authorize(begin(client, attacker), sub)
    for victim in ({"binding": BROWSER}, {"binding": attacker[:-1] + "b"}):
        resp = client.post("/v1/sessions/oidc", json=back | victim)
        assert resp.status_code == 401, resp.text
        assert "another browser" in resp.json()["message"]
    # No secret at all, or one that is no secret: refused before anything happens.
    for binding in (None, "", "short", "x" * 300, "a b" * 20, "\u0000" * 43):
        body = back if binding is None else back | {"binding": binding}
        resp = client.post("/v1/sessions/oidc", json=body)
        assert resp.status_code == 422, (binding, resp.text)
        start = client.post(
            "/v1/sessions/oidc/authorize",
            json={} if binding is None else {"binding": binding},
        )
        assert start.status_code == 422, (binding, start.text)
    assert client.post("/v1/sessions/oidc/authorize").status_code == 422
    assert audit_rows(client, "user_created") == []
    # The code was not spent by the refusals: the attacker's own browser finishes.
    resp = client.post("/v1/sessions/oidc", json=back | {"binding": attacker})
    assert resp.status_code == 201, resp.text


def test_unmapped_groups_are_denied_or_get_the_default_role(
    make_api: Any, oidc_provider: Provider
) -> None:
    sub = f"erin-{uuid.uuid4().hex[:8]}"
    oidc_provider.set_user(sub, preferred_username=sub, groups="contractors, guests")
    denied = sign_in(make_api(), oidc_provider, sub)
    assert denied.status_code == 403, denied.text
    assert denied.json()["code"] == "no_role"
    client = make_api(oidc={"default_role": "viewer"})
    allowed = sign_in(client, oidc_provider, sub)
    assert allowed.status_code == 201, allowed.text
    assert allowed.json()["user"]["roles"] == ["viewer"]


def test_denial_is_audited(make_api: Any, oidc_provider: Provider) -> None:
    client = make_api()
    sub = f"frank-{uuid.uuid4().hex[:8]}"
    oidc_provider.set_user(sub, groups=["nobody-knows"])
    assert sign_in(client, oidc_provider, sub).status_code == 403
    row = audit_rows(client, "login_denied")[-1]
    assert row.new_values["groups"] == ["nobody-knows"]
    assert row.new_values["method"] == "oidc"


def test_a_provider_name_never_takes_over_a_local_account(
    make_api: Any, oidc_provider: Provider
) -> None:
    client = make_api()
    sub = f"impostor-{uuid.uuid4().hex[:8]}"
    oidc_provider.set_user(
        sub,
        preferred_username="admin",
        email="admin@example.com",
        groups=["ballast-editors"],
    )
    resp = sign_in(client, oidc_provider, sub)
    assert resp.status_code == 201, resp.text
    user = resp.json()["user"]
    assert user["username"].startswith("admin-")
    assert user["roles"] == ["editor"]
    db: DB = client.app.state.db  # type: ignore[attr-defined]
    with db.session() as session:
        admin = session.execute(
            select(User).where(User.username == "admin")
        ).scalar_one()
        links = session.execute(select(UserIdentity.user_id)).scalars().all()
    assert admin.id not in links
    # And the new user has no password anyone could guess.
    login = client.post(
        "/v1/sessions", json={"username": user["username"], "password": "!external"}
    )
    assert login.status_code == 401


def test_a_disabled_user_cannot_sign_in_again(
    make_api: Any, oidc_provider: Provider
) -> None:
    client = make_api()
    sub = f"gina-{uuid.uuid4().hex[:8]}"
    oidc_provider.set_user(sub, groups=["ballast-editors"])
    first = sign_in(client, oidc_provider, sub)
    assert first.status_code == 201
    db: DB = client.app.state.db  # type: ignore[attr-defined]
    with db.engine.begin() as conn:
        conn.execute(
            User.__table__.update()
            .where(User.__table__.c.id == uuid.UUID(first.json()["user"]["id"]))
            .values(is_active=False)
        )
    assert sign_in(client, oidc_provider, sub).status_code == 401


def test_sign_in_methods_and_password_switch(make_api: Any) -> None:
    client = make_api(
        oidc={"display_name": "Company login"}, auth={"local_accounts": False}
    )
    assert client.get("/v1/sessions/methods").json() == {
        "password": False,
        "oidc": True,
        "oidc_label": "Company login",
        "proxy": False,
    }
    resp = client.post(
        "/v1/sessions", json={"username": "admin", "password": PASSWORDS["admin"]}
    )
    assert resp.status_code == 403
    assert resp.json()["code"] == "password_login_disabled"


def test_oidc_off_is_404_and_an_unreachable_provider_is_503(make_api: Any) -> None:
    off = make_api(oidc={"enabled": False})
    start = {"binding": BROWSER}
    assert off.post("/v1/sessions/oidc/authorize", json=start).status_code == 404
    finish = {"code": "c", "state": "s", "binding": BROWSER}
    assert off.post("/v1/sessions/oidc", json=finish).status_code == 404
    assert off.get("/v1/sessions/methods").json()["oidc"] is False
    down = make_api(oidc={"issuer": "http://127.0.0.1:9"})
    resp = down.post("/v1/sessions/oidc/authorize", json=start)
    assert resp.status_code == 503, resp.text


def test_enabled_oidc_needs_issuer_client_and_redirect(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="issuer, client_id, redirect_uri is not set"):
        make_config(tmp_path, auth={"oidc": {"enabled": True}})


# -- the verifier itself, on tokens the provider signed ------------------------------


def _provider_token(provider: Provider, sub: str, nonce: str) -> str:
    """An ID token from the provider for `sub`, fetched as a client would."""
    verifier = generate_token(64)
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": "openid",
        "nonce": nonce,
        "state": "s",
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    url = str(httpx.URL(f"{provider.issuer}/oauth2/authorize", params=params))
    code = provider.authorize(url, sub)["code"]
    token = provider.http.post(
        f"{provider.issuer}/oauth2/token",
        auth=(CLIENT_ID, SECRET),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": CLIENT_ID,
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    return str(token.json()["id_token"])


def test_tampered_and_unsigned_tokens_are_refused(oidc_provider: Provider) -> None:
    sub = f"henry-{uuid.uuid4().hex[:8]}"
    oidc_provider.set_user(sub, groups=["ballast-editors"])
    token = _provider_token(oidc_provider, sub, "n-1")
    keys = KeySet.import_key_set(
        oidc_provider.http.get(f"{oidc_provider.issuer}/jwks").json()
    )
    config = OidcConfig(**oidc_settings(oidc_provider.issuer))
    assert verify_id_token(token, keys, config, ["RS256"], "n-1")["sub"] == sub

    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["groups"] = ["ballast-admins"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    none_header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    for bad in (
        f"{header}.{forged}.{signature}",  # claims changed after signing
        f"{header}.{payload}.{signature[:-4]}AAAA",  # signature changed
        f"{none_header}.{payload}.",  # alg none
        "not.a.jwt",
        "",
    ):
        with pytest.raises(OidcRefused):
            verify_id_token(bad, keys, config, ["RS256", "none", "HS256"], "n-1")
