"""The application error hierarchy.

Every error a user can see carries a stable machine-readable ``code``, an HTTP
``status`` and JSON-safe ``details``; the api renders ``to_dict(trace_id)`` as the
error body, so a user can quote the trace id to support.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class AppError(Exception):
    """Base class of all expected application errors.

    Args:
        message: Human-readable message, safe to show to the user.
        code: Machine-readable code; defaults to the class's ``default_code``.
        details: JSON-safe extra data (field errors, conflicting versions...).
        status: HTTP status; defaults to the class's ``default_status``.
    """

    default_code: ClassVar[str] = "internal_error"
    default_status: ClassVar[int] = 500

    def __init__(
        self,
        message: str,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details: dict[str, Any] = dict(details or {})
        self.status = status if status is not None else self.default_status

    def to_dict(self, trace_id: str | None = None) -> dict[str, Any]:
        """Render the error body.

        Args:
            trace_id: The request's trace id (see ``log_error``).

        Returns:
            ``{"code", "message", "details", "trace_id"}``.
        """
        return {
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "trace_id": trace_id,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, status={self.status})"


class ValidationError(AppError):
    """Input failed validation (422); ``details`` usually maps fields to messages."""

    default_code = "validation_error"
    default_status = 422


class NotFoundError(AppError):
    """The resource does not exist or is not visible to the caller (404)."""

    default_code = "not_found"
    default_status = 404


class PermissionDenied(AppError):
    """The caller is authenticated but lacks a permission (403).

    Named so it does not shadow the builtin ``PermissionError`` (an ``OSError``).
    """

    default_code = "forbidden"
    default_status = 403


class AuthenticationError(AppError):
    """No valid session or credentials (401)."""

    default_code = "unauthenticated"
    default_status = 401


class ConflictError(AppError):
    """An optimistic-concurrency conflict (409).

    ``details`` carries both versions, so the UI can offer keep-mine/keep-theirs.

    Args:
        message: Human-readable message.
        current: The stored version (e.g. ``{"version": 4, "value": ...}``).
        attempted: The version the caller tried to write.
        details: Extra details, merged with ``current`` and ``attempted``.
        code: Machine-readable code; defaults to ``"conflict"``.
    """

    default_code = "conflict"
    default_status = 409

    def __init__(
        self,
        message: str = "The record was changed by someone else.",
        *,
        current: Any = None,
        attempted: Any = None,
        details: Mapping[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        merged = {**dict(details or {}), "current": current, "attempted": attempted}
        super().__init__(message, code=code, details=merged)
        self.current = current
        self.attempted = attempted


class TransientError(AppError):
    """A dependency is temporarily unavailable; retrying may succeed (503).

    Args:
        message: Human-readable message.
        code: Machine-readable code; defaults to ``"unavailable"``.
        details: JSON-safe extra data.
        retry_after: Suggested wait in seconds (``Retry-After``), if known.
    """

    default_code = "unavailable"
    default_status = 503

    def __init__(
        self,
        message: str,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.retry_after = retry_after


class JobError(AppError):
    """A background job failed."""

    default_code = "job_error"


class CacheError(AppError):
    """A cache operation failed; callers usually fall back to computing."""

    default_code = "cache_error"


class ConfigError(AppError):
    """Configuration is missing or invalid."""

    default_code = "config_error"
