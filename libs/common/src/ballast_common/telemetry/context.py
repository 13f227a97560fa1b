"""Request-scoped identifiers carried in context variables.

Context variables (not thread locals) follow both threads and asyncio tasks: a task
created inside a request inherits the request's ids, and two concurrent requests on
one event loop never see each other's values.
Ref: https://docs.python.org/3/library/contextvars.html
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from ballast_common.telemetry.pii import contains_pii

trace_id_var: ContextVar[str | None] = ContextVar("ballast_trace_id", default=None)
span_id_var: ContextVar[str | None] = ContextVar("ballast_span_id", default=None)
correlation_id_var: ContextVar[str | None] = ContextVar(
    "ballast_correlation_id", default=None
)
user_id_var: ContextVar[str | None] = ContextVar("ballast_user_id", default=None)
ip_var: ContextVar[str | None] = ContextVar("ballast_ip", default=None)
user_agent_var: ContextVar[str | None] = ContextVar("ballast_user_agent", default=None)

# W3C Trace Context, version 00: version-traceid-parentid-flags, lowercase hex only.
# Ref: https://www.w3.org/TR/trace-context/#traceparent-header-field-values
_TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16


def new_trace_id() -> str:
    """Return a new random trace id (32 lowercase hex characters)."""
    return secrets.token_hex(16)


def new_span_id() -> str:
    """Return a new random span id (16 lowercase hex characters)."""
    return secrets.token_hex(8)


def new_correlation_id() -> str:
    """Return a new correlation id (a UUID4 string)."""
    return str(uuid.uuid4())


def parse_traceparent(header: str | None) -> tuple[str, str] | None:
    """Parse a W3C ``traceparent`` header.

    Args:
        header: The raw header value, e.g.
            ``00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01``.

    Returns:
        ``(trace_id, parent_span_id)``, or ``None`` when the header is missing,
        malformed, of another version, or carries an all-zero id (which the spec
        declares invalid).
    """
    if not header:
        return None
    match = _TRACEPARENT_RE.match(header.strip())
    if match is None:
        return None
    trace_id, span_id, _flags = match.groups()
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    return trace_id, span_id


def format_traceparent(trace_id: str, span_id: str, *, sampled: bool = True) -> str:
    """Format a W3C ``traceparent`` header for an outgoing call.

    Args:
        trace_id: 32 lowercase hex characters.
        span_id: 16 lowercase hex characters (the caller's current span).
        sampled: Sets the ``sampled`` trace flag.

    Returns:
        The header value.

    Raises:
        ValueError: If either id is malformed or all zeros.
    """
    header = f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
    if parse_traceparent(header) is None:
        raise ValueError(f"invalid trace/span id: {trace_id!r}/{span_id!r}")
    return header


@contextmanager
def bind_request_context(
    *,
    trace_id: str | None = None,
    span_id: str | None = None,
    correlation_id: str | None = None,
    user_id: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> Iterator[dict[str, str | None]]:
    """Bind the ids of one unit of work (request, job, CLI command).

    Missing trace, span and correlation ids are generated, so everything logged
    inside the block can be tied together. The previous values are restored on
    exit, also when the block raises, which makes nesting safe.

    Args:
        trace_id: Trace id, e.g. from :func:`parse_traceparent`.
        span_id: This unit's span id; a new one is generated when omitted (the
            parent span id of an incoming ``traceparent`` is *not* our span).
        correlation_id: Correlation id, e.g. from an ``X-Correlation-ID`` header.
            One that carries personal data or a secret (an e-mail, a card number,
            a token: anything :func:`~ballast_common.telemetry.pii.mask_value`
            would hide) is replaced by a fresh id: the id is logged unmasked on
            every line, echoed to the caller and stored in audit rows.
        user_id: The authenticated user's id, if known.
        ip: The client IP address.
        user_agent: The client's ``User-Agent``.

    Yields:
        A snapshot of the bound context, as :func:`current_context` returns it.
    """
    values: list[tuple[ContextVar[str | None], str | None]] = [
        (trace_id_var, trace_id or new_trace_id()),
        (span_id_var, span_id or new_span_id()),
        (
            correlation_id_var,
            (
                correlation_id
                if correlation_id and not contains_pii(correlation_id)
                else new_correlation_id()
            ),
        ),
        (user_id_var, user_id),
        (ip_var, ip),
        (user_agent_var, user_agent),
    ]
    tokens: list[tuple[ContextVar[str | None], Token[str | None]]] = [
        (var, var.set(value)) for var, value in values
    ]
    try:
        yield current_context()
    finally:
        # Reset in reverse order; ContextVar.reset restores the exact prior value.
        for var, token in reversed(tokens):
            var.reset(token)


def set_user_id(user_id: str | None) -> Token[str | None]:
    """Set the user id after authentication, inside an already bound context.

    Args:
        user_id: The authenticated user's id.

    Returns:
        A token for ``user_id_var.reset`` if the caller needs to undo it.
    """
    return user_id_var.set(user_id)


def current_context() -> dict[str, str | None]:
    """Return a snapshot of the bound ids (``None`` where nothing is bound)."""
    return {
        "trace_id": trace_id_var.get(),
        "span_id": span_id_var.get(),
        "correlation_id": correlation_id_var.get(),
        "user_id": user_id_var.get(),
        "ip": ip_var.get(),
        "user_agent": user_agent_var.get(),
    }
