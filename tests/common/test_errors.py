import pytest

from ballast_common.errors import (
    AppError,
    AuthenticationError,
    CacheError,
    ConfigError,
    ConflictError,
    JobError,
    NotFoundError,
    PermissionDenied,
    TransientError,
    ValidationError,
)


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [
        (AppError, 500, "internal_error"),
        (ValidationError, 422, "validation_error"),
        (NotFoundError, 404, "not_found"),
        (PermissionDenied, 403, "forbidden"),
        (AuthenticationError, 401, "unauthenticated"),
        (TransientError, 503, "unavailable"),
        (JobError, 500, "job_error"),
        (CacheError, 500, "cache_error"),
        (ConfigError, 500, "config_error"),
    ],
)
def test_defaults(cls: type[AppError], status: int, code: str) -> None:
    err = cls("something happened")
    assert isinstance(err, AppError)
    assert (err.status, err.code, err.message, err.details) == (
        status,
        code,
        "something happened",
        {},
    )
    assert str(err) == "something happened"
    assert code in repr(err)


def test_overrides_and_to_dict() -> None:
    details = {"field": "name"}
    err = ValidationError("bad", code="name_required", details=details, status=400)
    details["field"] = "mutated"  # the error keeps its own copy
    assert err.to_dict("abc") == {
        "code": "name_required",
        "message": "bad",
        "details": {"field": "name"},
        "trace_id": "abc",
    }
    assert err.status == 400
    assert AppError("x").to_dict()["trace_id"] is None


def test_conflict_carries_both_versions() -> None:
    err = ConflictError(
        current={"version": 4}, attempted={"version": 3}, details={"field": "title"}
    )
    assert err.status == 409
    assert err.code == "conflict"
    assert err.details == {
        "field": "title",
        "current": {"version": 4},
        "attempted": {"version": 3},
    }
    assert (err.current, err.attempted) == ({"version": 4}, {"version": 3})
    assert err.message


def test_transient_retry_after_and_builtin_not_shadowed() -> None:
    assert TransientError("db down", retry_after=2.5).retry_after == 2.5
    assert not issubclass(PermissionDenied, PermissionError)
    with pytest.raises(AppError, match="nope"):
        raise PermissionDenied("nope")
