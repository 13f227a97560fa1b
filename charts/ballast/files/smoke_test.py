"""The promotion smoke test, run in the api image by the Argo Rollouts analysis Job.

    python -c "$(cat smoke_test.py)" API_URL UI_URL

The one smoke test: `scripts/deploy.py promote` imports this file for `smoke_api`, and
tests/charts/test_deploy_script.py runs both paths against one fake api and compares the
requests. api /healthz and /readyz; login as the smoke-test user (BALLAST_SMOKE_USERNAME /
BALLAST_SMOKE_PASSWORD); /v1/sessions/me and a page of /v1/projects; a draft written, read
back and discarded; logout; ui /_stcore/health.
Standard library only: the chart passes this file to `python -c`. Exit 0 when every step
passed, else 1 with the failed step on stderr.
"""

import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

# A form id no page uses, discarded after the round trip (deploy.py's SMOKE_FORM).
SMOKE_FORM = "ballast.smoke-test"


class SmokeError(Exception):
    """A failed step, in one line."""


def http(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One HTTP request; (status, parsed JSON body or text)."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise SmokeError(f"{url!r} is not an http(s) URL")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise SmokeError(
            f"{method} {url} failed: {getattr(exc, 'reason', exc)}"
        ) from None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def expect(step: str, status: int, want: int) -> None:
    if status != want:
        raise SmokeError(
            f"smoke test failed: {step} answered HTTP {status}, not {want}"
        )


def smoke_api(base: str, username: str, password: str) -> None:
    """Health, readiness, login, a read and a draft round trip against one api."""
    status, _ = http("GET", f"{base}/healthz")
    expect("GET /healthz", status, 200)
    status, _ = http("GET", f"{base}/readyz")
    expect("GET /readyz", status, 200)
    status, session = http(
        "POST", f"{base}/v1/sessions", body={"username": username, "password": password}
    )
    expect(f"login as {username}", status, 201)
    if not isinstance(session, dict) or not session.get("token"):
        raise SmokeError("smoke test failed: login answered without a token")
    token = str(session["token"])
    try:
        status, me = http("GET", f"{base}/v1/sessions/me", token=token)
        expect("GET /v1/sessions/me", status, 200)
        if not isinstance(me, dict) or me.get("username") != username:
            raise SmokeError("smoke test failed: /v1/sessions/me names another user")
        status, _ = http("GET", f"{base}/v1/projects?size=1", token=token)
        expect("GET /v1/projects", status, 200)
        nonce = uuid.uuid4().hex
        # seq grows with time: a draft left by an interrupted earlier run never wins.
        item = {
            "form_id": SMOKE_FORM,
            "field": "probe",
            "value": nonce,
            "seq": time.time_ns() // 1000,
        }
        status, _ = http(
            "PUT",
            f"{base}/v1/drafts",
            body={"items": [item]},
            token=token,
            headers={"Idempotency-Key": f"smoke-{nonce}"},
        )
        expect("PUT /v1/drafts", status, 200)
        query = urllib.parse.urlencode({"form_id": SMOKE_FORM})
        status, drafts = http("GET", f"{base}/v1/drafts?{query}", token=token)
        expect("GET /v1/drafts", status, 200)
        if not any(d.get("value") == nonce for d in drafts or []):
            raise SmokeError(
                "smoke test failed: the draft just written did not read back"
            )
        status, _ = http("DELETE", f"{base}/v1/drafts?{query}", token=token)
        expect("DELETE /v1/drafts", status, 200)
    finally:
        # Logging out is tidying up; the session expires anyway.
        with contextlib.suppress(SmokeError):
            http("DELETE", f"{base}/v1/sessions/current", token=token)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SmokeError("usage: smoke_test.py API_URL UI_URL")
    # A standalone stdlib script, not a Ballast process: the Job's env (from the smoke-test
    # Secret) is its only input besides the URLs; deploy.py takes the same variables.
    username = os.environ.get("BALLAST_SMOKE_USERNAME", "")  # noqa: TID251
    password = os.environ.get("BALLAST_SMOKE_PASSWORD", "")  # noqa: TID251
    if not (username and password):
        raise SmokeError(
            "no smoke-test credentials: BALLAST_SMOKE_USERNAME and BALLAST_SMOKE_PASSWORD are empty"
        )
    api, ui = (url.rstrip("/") for url in argv)
    smoke_api(api, username, password)
    status, _ = http("GET", f"{ui}/_stcore/health")
    expect("ui GET /_stcore/health", status, 200)
    sys.stdout.write(
        "smoke test passed (api health, readiness, login, read, draft round trip, ui health)\n"
    )


# `python -c` runs this as __main__; scripts/deploy.py imports it for smoke_api.
if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except SmokeError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
