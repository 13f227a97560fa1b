"""``log_error``: one structured, masked line per handled error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ballast_common.telemetry.context import (
    correlation_id_var,
    current_ids_or_bound,
    new_span_id,
    new_trace_id,
)
from ballast_common.telemetry.logging import get_logger
from ballast_common.telemetry.pii import mask_data, mask_value
from ballast_common.telemetry.tracebacks import exception_message, format_exception

_log = get_logger("ballast.errors")


def log_error(err: BaseException, ctx: Mapping[str, Any] | None = None) -> str:
    """Log an error with its stack trace, context and request ids.

    The line has event ``"error"``, ``error_type`` (qualified class name),
    ``error_message``, ``stack`` (the full formatted traceback, chained causes
    included) and ``ctx``; all of it masked. Message and stack never carry SQL
    statement parameters, whichever engine raised (see
    :mod:`ballast_common.telemetry.tracebacks`). Outside a bound request context a
    fresh trace id is generated for this error, so there is always an id to quote.

    Args:
        err: The exception (it need not have been raised: the stack is then
            just the exception line).
        ctx: Extra context (ids, parameters); masked before logging.

    Returns:
        The trace id on the line, for showing to the user ("error id ...").
    """
    bound_trace, bound_span = current_ids_or_bound()
    trace_id = bound_trace or new_trace_id()
    span_id = bound_span or new_span_id()
    error_type = type(err).__qualname__
    module = type(err).__module__
    if module not in ("builtins", "__main__"):
        error_type = f"{module}.{error_type}"
    stack = format_exception(err)
    _log.error(
        "error",
        error_type=error_type,
        error_message=mask_value(exception_message(err)),
        stack=mask_value(stack),
        ctx=mask_data(dict(ctx)) if ctx else {},
        trace_id=trace_id,
        span_id=span_id,
        correlation_id=correlation_id_var.get(),
    )
    return trace_id
