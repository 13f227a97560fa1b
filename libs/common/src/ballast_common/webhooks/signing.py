"""Standard Webhooks signatures (https://www.standardwebhooks.com), through the
`standardwebhooks` package: ``webhook-id``, ``webhook-timestamp`` (the receiver
refuses more than 5 minutes of skew either way) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, several separated by spaces).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks import Webhook, WebhookVerificationError

from ballast_common.errors import AuthenticationError


class SignatureRejected(AuthenticationError):
    """Missing or bad signature headers, a stale or future timestamp (401)."""

    default_code = "webhook_signature"


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def sign(
    secret: str, message_id: str, body: bytes, at: datetime | None = None
) -> dict[str, str]:
    """The three headers of a signed delivery of `body`."""
    when = (at or datetime.now(UTC)).astimezone(UTC)
    signature = Webhook(secret).sign(message_id, when, body.decode("utf-8"))
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    """Check the signature and timestamp of `body` against any of the (space-separated)
    secrets.

    Raises:
        SignatureRejected: on anything but a valid, fresh signature.
    """
    wanted = {
        k.lower(): v for k, v in headers.items() if k.lower().startswith("webhook-")
    }
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureRejected("the body is not UTF-8") from None
    reason = "no matching signature"
    for one in secret.split():
        try:
            Webhook(one).verify(text, wanted, json_parse=False)
            return
        except WebhookVerificationError as exc:
            reason = str(exc).lower() or reason
            if "timestamp" in reason or "headers" in reason:
                break  # the same for every secret
        except (ValueError, binascii.Error):
            # A malformed signature list ("v1" without a comma, bad base64).
            reason = "malformed webhook-signature header"
            break
    code = "webhook_timestamp" if "timestamp" in reason else None
    raise SignatureRejected(f"webhook rejected: {reason}", code=code)
