"""Structured logging for every Ballast process.

structlog and the standard library share one handler: structlog loggers hand their
event dicts to ``ProcessorFormatter`` and stdlib records (uvicorn, SQLAlchemy,
Alembic, Celery) go through the same final processors, so every line has the same
shape and passes through the same PII masking.
Ref: https://www.structlog.org/en/stable/standard-library.html#rendering-using-structlog-based-formatters-within-logging

Outside a bound request context (process start-up, background loops) the id fields
are emitted as ``null`` rather than filled with a made-up process-wide trace id: a
shared fake id would tie unrelated work together and point to no real trace, while
``trace_id IS NULL`` is an honest, filterable "not part of a request".
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import IO, Any, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from ballast_common.telemetry.context import (
    correlation_id_var,
    current_ids_or_bound,
    user_id_var,
)
from ballast_common.telemetry.pii import mask_data
from ballast_common.telemetry.tracebacks import format_exc_info

# Marks the one handler configure_logging owns, so a second call replaces it
# instead of stacking a duplicate (and leaves foreign handlers, e.g. pytest's
# caplog handler, alone).
_HANDLER_NAME = "ballast"

# Loggers that install their own handlers and stop propagation; they are reset to
# propagate into the root handler so their lines come out in the same format.
# (Run uvicorn with log_config=None so it does not reinstall them.)
_PROPAGATING_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

# Field order of every rendered line; these fields are produced by us and are
# never masked (trace ids are long hex strings that the token rule would eat).
_LEADING_KEYS = (
    "timestamp",
    "level",
    "event",
    "logger",
    "service",
    "trace_id",
    "span_id",
    "correlation_id",
)
_TRUSTED_KEYS = frozenset(_LEADING_KEYS) - {"event"}


def _jsonable(value: Any) -> Any:
    """Turn arbitrary objects into JSON-native values *before* masking.

    Left to the renderer, an unknown object would be ``repr``-ed after masking ran,
    and a repr can carry an e-mail address or a token.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {
            (
                k if isinstance(k, str | int | float | bool) or k is None else str(k)
            ): _jsonable(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return str(value)


def _add_service(service: str) -> Processor:
    def add_service(
        _logger: WrappedLogger, _method: str, event_dict: EventDict
    ) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add_service


def add_context_ids(
    _logger: WrappedLogger, _method: str, event_dict: EventDict
) -> EventDict:
    """Add the current span's trace/span ids and the bound correlation id (``None``
    when unbound): a job's lines carry its task run's span, a request's its span.

    Explicitly passed values win, which lets ``log_error`` stamp an id it
    generated for an error outside any request.
    """
    if "trace_id" not in event_dict:
        trace_id, span_id = current_ids_or_bound()
        event_dict["trace_id"] = trace_id
        event_dict.setdefault("span_id", span_id)
    else:
        event_dict.setdefault("span_id", None)
    event_dict.setdefault("correlation_id", correlation_id_var.get())
    user_id = user_id_var.get()
    if user_id is not None:
        event_dict.setdefault("user_id", user_id)
    return event_dict


def mask_event_dict(
    _logger: WrappedLogger, _method: str, event_dict: EventDict
) -> EventDict:
    """Mask PII in every field, the message and the exception text included.

    Runs last before rendering so nothing added by an earlier processor escapes.
    Also puts the standard fields first for readability.
    """
    masked = mask_data(
        {k: _jsonable(v) for k, v in event_dict.items() if k not in _TRUSTED_KEYS}
    )
    ordered: EventDict = {}
    for key in _LEADING_KEYS:
        if key in event_dict:
            ordered[key] = masked.pop(key) if key == "event" else event_dict[key]
    ordered.update(masked)
    return ordered


def _shared_processors() -> list[Processor]:
    # Applied to structlog and foreign (stdlib) records alike, before formatting.
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def configure_logging(
    service: str,
    *,
    level: str = "INFO",
    fmt: Literal["auto", "json", "console"] = "json",
    stream: IO[str] | None = None,
) -> None:
    """Configure structlog and the standard library for this process.

    Call once per process entry point (api lifespan, Celery
    ``worker_process_init``, Streamlit app, CLI callback). Calling again replaces
    the previous configuration; handlers are never duplicated.

    Every line carries ``timestamp`` (ISO 8601, UTC), ``level``, ``event``,
    ``logger``, ``service``, ``trace_id``, ``span_id`` and ``correlation_id``
    (``null`` outside a bound context, see the module docstring), plus
    ``user_id`` when bound, and everything is PII-masked.

    Args:
        service: Service name written on every line (``api``, ``jobs``...).
        level: Minimum level name for all loggers (``DEBUG``, ``INFO``...).
        fmt: ``json`` (one object per line, for the cluster), ``console``
            (human-readable, for local development) or ``auto`` (console when
            ``stream`` is a terminal, else json).
        stream: Where to write; defaults to ``sys.stdout`` (container logs).

    Raises:
        ValueError: If ``level`` is not a known level name.
    """
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level: {level!r}")

    if fmt == "auto":
        target = stream if stream is not None else sys.stdout
        isatty = getattr(target, "isatty", None)
        fmt = "console" if callable(isatty) and isatty() else "json"
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _add_service(service),
            add_context_ids,
            # Tracebacks without SQL statement parameters, then masked like the rest.
            structlog.processors.ExceptionRenderer(format_exc_info),
            mask_event_dict,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
            existing.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)

    for name in _PROPAGATING_LOGGERS:
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True

    structlog.configure(
        processors=[
            # Drop below-level calls before any processor does work.
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not caching keeps reconfiguration and structlog.testing.capture_logs
        # effective for loggers that were already used; the cost is one bind
        # per call on module-level lazy loggers.
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """Return a structlog logger backed by the stdlib logger ``name``.

    Args:
        name: Logger name; defaults to the calling module's ``__name__``.

    Returns:
        A bound logger; use snake_case event names: ``log.info("job_started", job_id=...)``.
    """
    if name is None:
        # One frame up is the caller; resolve it now so the name does not depend
        # on where the logger is first used.
        name = sys._getframe(1).f_globals.get("__name__", "ballast")
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
