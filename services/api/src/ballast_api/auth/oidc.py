"""OpenID Connect sign-in: authorization code + PKCE, run by the api.

The ui only relays: it asks for an authorization URL (`begin`), sends the browser
there, and hands the `code` and `state` the provider sent back to the api (`finish`).
The api decides everything: it exchanges the code (with the PKCE verifier and, for a
confidential client, the client secret) and verifies the ID token itself -- signature
against the provider's JWKS, issuer, audience (and `azp`), expiry, issued-at and the
nonce it chose. Nothing the browser says about the user is believed.

`state` carries the nonce, the PKCE verifier and the SHA-256 of the browser's binding
secret, sealed (Fernet: AES-CBC + HMAC) with a key derived from `security.secret_key`,
and expires after `auth.oidc.state_ttl_s`, so any api replica can finish a sign-in
another one began and nothing is stored per attempt. A code is single-use at the
provider, so a replayed (code, state) fails there. The binding secret (the ui keeps it
in an HttpOnly cookie of the browser that began) must come back with the code: a code
and state an attacker got for their own account, sent to a victim, are refused in the
victim's browser (login CSRF, RFC 6749 §10.12).

Libraries: Authlib (`AsyncOAuth2Client`: authorization URL, PKCE S256, token request;
the library Streamlit's own `st.login` uses) and joserfc (JWS verification and the
claims registry; Authlib's successor for JOSE).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from cryptography.fernet import Fernet, InvalidToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from ballast_common.config import OidcConfig, OutboundTargetConfig
from ballast_common.errors import AuthenticationError, TransientError
from ballast_common.telemetry import get_logger

log = get_logger(__name__)

# Asymmetric algorithms only: "none" and the HMAC family (keyed with the client secret,
# which would let anyone holding the secret mint tokens) are never accepted.
_ALLOWED_ALGS = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
    }
)
# A token naming an unknown key makes the JWKS be fetched again at most this often.
_JWKS_REFRESH_MIN_S = 60.0
# Longest code / state accepted from the browser (characters).
MAX_CODE_LEN = 2048
MAX_STATE_LEN = 4096


class OidcRefused(AuthenticationError):
    """The sign-in is refused (bad state, failed exchange, token not valid): 401."""


class OidcUnavailable(TransientError):
    """The provider cannot be reached or answered nonsense: 503, try again."""

    default_code = "oidc_unavailable"
    default_status = 503


@dataclass
class _Metadata:
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: list[str]
    fetched_at: float


@dataclass
class OidcClient:
    """One provider's client, shared by the requests of one api process."""

    config: OidcConfig
    outbound: OutboundTargetConfig
    secret_key: str
    _metadata: _Metadata | None = None
    _keys: KeySet | None = None
    _keys_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # -- state -------------------------------------------------------------------

    def _fernet(self) -> Fernet:
        digest = hashlib.sha256(
            b"ballast-oidc-state\0" + self.secret_key.encode()
        ).digest()
        return Fernet(base64.urlsafe_b64encode(digest))

    def seal_state(self, nonce: str, verifier: str, binding: str) -> str:
        sealed = {"n": nonce, "v": verifier, "b": _digest(binding)}
        return self._fernet().encrypt(json.dumps(sealed).encode()).decode()

    def open_state(self, state: str, binding: str) -> tuple[str, str]:
        """(nonce, verifier) of a state this api sealed for this browser, or OidcRefused."""
        try:
            raw = self._fernet().decrypt(
                state.encode("ascii"), ttl=self.config.state_ttl_s
            )
            data = json.loads(raw)
            nonce, verifier, bound = str(data["n"]), str(data["v"]), str(data["b"])
        except (InvalidToken, UnicodeError, ValueError, KeyError, TypeError):
            raise OidcRefused(
                "sign-in state is invalid or expired: start again"
            ) from None
        if not hmac.compare_digest(bound, _digest(binding)):
            log.warning("oidc_binding_mismatch")
            raise OidcRefused(
                "this sign-in was started in another browser: start again here"
            )
        return nonce, verifier

    # -- provider metadata -------------------------------------------------------

    def _http(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            verify=_tls(),
            timeout=httpx2.Timeout(
                self.outbound.timeout_s, connect=self.outbound.connect_timeout_s
            ),
            follow_redirects=False,
        )

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._http() as http:
                resp = await http.get(url, headers={"Accept": "application/json"})
            resp.raise_for_status()
            data = resp.json()
        except (httpx2.HTTPError, ValueError) as exc:
            log.warning("oidc_provider_unavailable", url=url, error=str(exc))
            raise OidcUnavailable(
                "the sign-in provider cannot be reached: try again"
            ) from None
        if not isinstance(data, dict):
            raise OidcUnavailable("the sign-in provider sent an unexpected answer")
        return data

    async def metadata(self) -> _Metadata:
        """The discovery document (cached for `metadata_ttl_s`)."""
        now = time.monotonic()
        meta = self._metadata
        if meta is not None and now - meta.fetched_at < self.config.metadata_ttl_s:
            return meta
        issuer = self.config.issuer.rstrip("/")
        doc = await self._get_json(issuer + "/.well-known/openid-configuration")
        # The document must name the configured issuer (OIDC Discovery §4.3): a
        # provider answering for another issuer is a mix-up, not a source of keys.
        if str(doc.get("issuer", "")).rstrip("/") != issuer:
            log.error(
                "oidc_issuer_mismatch", configured=issuer, discovered=doc.get("issuer")
            )
            raise OidcUnavailable("the sign-in provider names another issuer")
        try:
            algs = [
                a
                for a in doc.get("id_token_signing_alg_values_supported") or ["RS256"]
                if a in _ALLOWED_ALGS
            ]
            meta = _Metadata(
                authorization_endpoint=str(doc["authorization_endpoint"]),
                token_endpoint=str(doc["token_endpoint"]),
                jwks_uri=str(doc["jwks_uri"]),
                algorithms=algs or ["RS256"],
                fetched_at=now,
            )
        except KeyError as exc:
            raise OidcUnavailable(
                f"the sign-in provider's discovery lacks {exc}"
            ) from None
        self._metadata = meta
        return meta

    async def keys(self, *, refresh: bool = False) -> KeySet:
        """The provider's signing keys (cached; `refresh` fetches them again, rate-limited)."""
        now = time.monotonic()
        async with self._lock:
            fresh = now - self._keys_at < self.config.metadata_ttl_s
            if (
                self._keys is not None
                and fresh
                and not (refresh and now - self._keys_at >= _JWKS_REFRESH_MIN_S)
            ):
                return self._keys
            meta = await self.metadata()
            data = await self._get_json(meta.jwks_uri)
            try:
                self._keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError):
                raise OidcUnavailable(
                    "the sign-in provider's keys cannot be read"
                ) from None
            self._keys_at = now
            return self._keys

    # -- the flow ----------------------------------------------------------------

    def _oauth(self, meta: _Metadata) -> AsyncOAuth2Client:
        secret = self.config.client_secret
        return AsyncOAuth2Client(
            client_id=self.config.client_id,
            client_secret=secret.get_secret_value() if secret else None,
            # A public client (no secret) authenticates by PKCE alone.
            token_endpoint_auth_method="client_secret_basic" if secret else "none",
            redirect_uri=self.config.redirect_uri,
            scope=" ".join(self.config.scopes),
            code_challenge_method="S256",
            # A number: Authlib hands it to each request as is.
            timeout=self.outbound.timeout_s,
            verify=_tls(),
        )

    async def begin(self, binding: str) -> str:
        """The provider's authorization URL for a new sign-in by the browser keeping
        the secret `binding`."""
        meta = await self.metadata()
        nonce = generate_token(32)
        verifier = generate_token(64)  # RFC 7636: 43..128 characters
        state = self.seal_state(nonce, verifier, binding)
        async with self._oauth(meta) as oauth:
            url, _ = oauth.create_authorization_url(
                meta.authorization_endpoint,
                state=state,
                nonce=nonce,
                code_verifier=verifier,
            )
        return str(url)

    async def finish(self, code: str, state: str, binding: str) -> dict[str, Any]:
        """Exchange `code` and verify its ID token; the token's claims.

        Raises:
            OidcRefused: bad or expired state, a state begun by another browser (not
                this `binding`), a code the provider refuses, or an ID token that
                fails any check (401).
            OidcUnavailable: the provider cannot be reached (503).
        """
        nonce, verifier = self.open_state(state, binding)
        meta = await self.metadata()
        try:
            async with self._oauth(meta) as oauth:
                token = await oauth.fetch_token(
                    meta.token_endpoint, code=code, code_verifier=verifier
                )
        except OAuthError as exc:
            log.info("oidc_code_refused", error=exc.error)
            raise OidcRefused(
                f"the sign-in provider refused the code: {exc.error}"
            ) from None
        except httpx2.HTTPStatusError as exc:
            # Not an OAuth error body: a 4xx is a refusal, anything else an outage.
            status = exc.response.status_code
            log.warning("oidc_token_endpoint_error", status=status)
            if 400 <= status < 500:
                raise OidcRefused(
                    f"the sign-in provider refused the code (HTTP {status})"
                ) from None
            raise OidcUnavailable("the sign-in provider failed: try again") from None
        except httpx2.HTTPError as exc:
            log.warning(
                "oidc_provider_unavailable", url=meta.token_endpoint, error=str(exc)
            )
            raise OidcUnavailable(
                "the sign-in provider cannot be reached: try again"
            ) from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise OidcRefused("the sign-in provider sent no ID token")
        return await self.verify(id_token, nonce)

    async def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        """Verify an ID token (signature, iss, aud, azp, exp, iat, nonce); its claims."""
        meta = await self.metadata()
        keys = await self.keys()
        try:
            claims = verify_id_token(
                id_token, keys, self.config, meta.algorithms, nonce
            )
        except _UnknownKey:
            # The provider may have rotated its keys since they were fetched.
            keys = await self.keys(refresh=True)
            try:
                claims = verify_id_token(
                    id_token, keys, self.config, meta.algorithms, nonce
                )
            except _UnknownKey:
                raise OidcRefused(
                    "ID token not valid: signed by an unknown key"
                ) from None
        return claims


@functools.cache
def _digest(binding: str) -> str:
    return hashlib.sha256(binding.encode()).hexdigest()


def _tls() -> ssl.SSLContext:
    # Built once: loading the CA bundle for every client costs tens of milliseconds.
    return httpx2.create_ssl_context()


class _UnknownKey(Exception):
    pass


def verify_id_token(
    id_token: str,
    keys: KeySet,
    config: OidcConfig,
    algorithms: list[str],
    nonce: str,
) -> dict[str, Any]:
    """Verify an ID token against `keys` and `config`; its claims, or OidcRefused.

    Checks (OpenID Connect Core §3.1.3.7): a signature by one of the provider's keys
    with an allowed asymmetric algorithm; `iss` is the configured issuer; `aud`
    contains the client id (and `azp` is the client id when there are several
    audiences or `azp` is present); `exp` in the future and `iat` not in the future
    (both within `leeway_s`); `sub` present; `nonce` is the one this sign-in sent.
    """
    try:
        token = jwt.decode(
            id_token, keys, algorithms=[a for a in algorithms if a in _ALLOWED_ALGS]
        )
    except InvalidKeyIdError:
        raise _UnknownKey from None
    except (JoseError, ValueError, TypeError) as exc:
        raise OidcRefused(f"ID token not valid: {_reason(exc)}") from None
    claims = dict(token.claims)
    registry = jwt.JWTClaimsRegistry(
        leeway=config.leeway_s,
        iss={"essential": True, "value": config.issuer.rstrip("/")},
        aud={"essential": True, "value": config.client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise OidcRefused(f"ID token not valid: {_reason(exc)}") from None
    aud = claims.get("aud")
    azp = claims.get("azp")
    if (
        (isinstance(aud, list) and len(aud) > 1) or azp is not None
    ) and azp != config.client_id:
        raise OidcRefused("ID token not valid: azp is not this client")
    return claims


def _reason(exc: Exception) -> str:
    return (
        getattr(exc, "description", None)
        or getattr(exc, "error", None)
        or type(exc).__name__
    )[:200]


def claim_path(claims: dict[str, Any], path: str) -> Any:
    """The value at a dotted claim path (`realm_access.roles`), or None."""
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def groups_of(value: Any) -> list[str]:
    """A groups claim as a list of names: a list, or a space/comma separated string."""
    if isinstance(value, str):
        return [g for g in value.replace(",", " ").split() if g]
    if isinstance(value, list):
        return [str(g) for g in value if isinstance(g, str | int) and str(g)]
    return []
