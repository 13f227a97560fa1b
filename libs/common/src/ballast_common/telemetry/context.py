"""Request-scoped identifiers carried in context variables.

Context variables (not thread locals) follow both threads and asyncio tasks: a task
created inside a request inherits the request's ids, and two concurrent requests on
one event loop never see each other's values.
Ref: https://docs.python.org/3/library/contextvars.html
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from ballast_common.telemetry.pii import contains_pii
from ballast_common.telemetry.tracing import current_ids
from ballast_common.telemetry.tracing import new_span_id as new_span_id
from ballast_common.telemetry.tracing import new_trace_id as new_trace_id

trace_id_var: ContextVar[str | None] = ContextVar("ballast_trace_id", default=None)
span_id_var: ContextVar[str | None] = ContextVar("ballast_span_id", default=None)
correlation_id_var: ContextVar[str | None] = ContextVar(
    "ballast_correlation_id", default=None
)
user_id_var: ContextVar[str | None] = ContextVar("ballast_user_id", default=None)
ip_var: ContextVar[str | None] = ContextVar("ballast_ip", default=None)
user_agent_var: ContextVar[str | None] = ContextVar("ballast_user_agent", default=None)


def new_correlation_id() -> str:
    """Return a new correlation id (a UUID4 string)."""
    return str(uuid.uuid4())


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
        trace_id: Trace id; by default the current span's (an OpenTelemetry span,
            recording or not), else a new one.
        span_id: This unit's span id; by default the current span's, else a new one
            (the parent span id of an incoming ``traceparent`` is *not* our span).
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
    span = current_ids()
    if span is not None and trace_id is None:
        trace_id, span_id = span[0], span_id or span[1]
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


def current_ids_or_bound() -> tuple[str | None, str | None]:
    """``(trace_id, span_id)``: the current span's (a job's task run, an SQL statement
    inside a request), else the bound ones (``None`` where nothing is bound)."""
    span = current_ids()
    if span is not None:
        return span
    return trace_id_var.get(), span_id_var.get()


def current_context() -> dict[str, str | None]:
    """Return a snapshot of the ids: the current span's trace and span ids (see
    `current_ids_or_bound`), the bound correlation, user, ip and user agent."""
    trace_id, span_id = current_ids_or_bound()
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "correlation_id": correlation_id_var.get(),
        "user_id": user_id_var.get(),
        "ip": ip_var.get(),
        "user_agent": user_agent_var.get(),
    }
