"""Login hand-off nonces in the api: single use, short-lived, useless to a database reader."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ballast_api.auth.handoff import _key
from ballast_common.models import utcnow
from ballast_common.sealing import SealError, unseal
from ballast_common.security import nonce_digest
from tests.api.conftest import Api
from tests.api.test_races import concurrently


def _issue(api: Api, user: str = "editor") -> dict:
    resp = api.client.post("/v1/sessions/handoffs", headers=api.h(user))
    assert resp.status_code == 201, resp.text
    return resp.json()


def _redeem(api: Api, nonce: str):
    return api.client.post("/v1/sessions/handoffs/redeem", json={"nonce": nonce})


def test_redeem_gives_the_token_once(api: Api) -> None:
    issued = _issue(api)
    assert len(issued["nonce"]) >= 40
    assert issued["max_age_s"] >= 60
    first = _redeem(api, issued["nonce"])
    assert first.status_code == 200
    assert first.json() == {
        "token": api.tokens["editor"],
        "max_age_s": issued["max_age_s"],
    }
    me = api.client.get(
        "/v1/sessions/me", headers={"Authorization": f"Bearer {first.json()['token']}"}
    )
    assert me.json()["username"] == "editor"
    second = _redeem(api, issued["nonce"])
    assert second.status_code == 400
    assert second.json()["code"] == "invalid_handoff"
    assert api.sql("SELECT count(*) FROM session_handoffs")[0][0] == 0


def test_expired_nonce_fails_and_expired_rows_are_swept(api: Api) -> None:
    old = _issue(api)
    api.sql(
        "UPDATE session_handoffs SET expires_at = :t",
        t=utcnow() - timedelta(seconds=1),
    )
    resp = _redeem(api, old["nonce"])
    assert resp.status_code == 400
    assert resp.json()["code"] == "invalid_handoff"
    stale = _issue(api)
    api.sql(
        "UPDATE session_handoffs SET expires_at = :t WHERE nonce_sha256 = :h",
        t=utcnow() - timedelta(seconds=1),
        h=nonce_digest(stale["nonce"]),
    )
    fresh = _issue(api)  # issuing sweeps what expired
    rows = [r[0] for r in api.sql("SELECT nonce_sha256 FROM session_handoffs")]
    assert rows == [nonce_digest(fresh["nonce"])]
    assert _redeem(api, fresh["nonce"]).status_code == 200


def test_concurrent_redeems_of_one_nonce_exactly_one_wins(api: Api) -> None:
    issued = _issue(api)
    results = concurrently(lambda _i: _redeem(api, issued["nonce"]), n=8)
    won = [r for r in results if r.status_code == 200]
    lost = [r for r in results if r.status_code != 200]
    assert len(won) == 1, [r.text for r in results]
    assert won[0].json()["token"] == api.tokens["editor"]
    assert len(lost) == 7
    assert {(r.status_code, r.json()["code"]) for r in lost} == {
        (400, "invalid_handoff")
    }


def test_a_database_row_alone_does_not_reveal_the_token(api: Api) -> None:
    issued = _issue(api)
    token = api.tokens["editor"]
    ((key, sealed, max_age, _expires),) = api.sql(
        "SELECT nonce_sha256, sealed_token, max_age_s, expires_at FROM session_handoffs"
    )
    assert key == nonce_digest(issued["nonce"])
    for column in (key, sealed, str(max_age)):
        assert token not in column
        assert issued["nonce"] not in column
    pepper = api.config.security.secret_key.get_secret_value()
    # The stored digest is not the key, and neither is any other guess a reader has.
    for guess in (key, sealed, "x", token):
        with pytest.raises(SealError):
            unseal(sealed, _key(guess, pepper), context=key)
    with pytest.raises(SealError):  # the right key, but moved to another row
        unseal(sealed, _key(issued["nonce"], pepper), context="0" * 64)
    assert unseal(sealed, _key(issued["nonce"], pepper), context=key) == token


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"nonce": ""}, 422),
        ({"nonce": "x" * 5000}, 422),
        ({"nonce": None}, 422),
        ({}, 422),
        ({"nonce": "a\x00b"}, 422),
        ({"nonce": "not-issued"}, 400),
    ],
)
def test_bad_redeem_input_is_a_clear_4xx(api: Api, body: dict, status: int) -> None:
    resp = api.client.post("/v1/sessions/handoffs/redeem", json=body)
    assert resp.status_code == status, resp.text


def test_issuing_needs_a_live_session(api: Api) -> None:
    assert api.client.post("/v1/sessions/handoffs").status_code == 401
    api.client.delete("/v1/sessions/current", headers=api.h("viewer"))
    resp = api.client.post("/v1/sessions/handoffs", headers=api.h("viewer"))
    assert resp.status_code == 401
