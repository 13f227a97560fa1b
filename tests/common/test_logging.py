import io
import json
import logging
import re
from datetime import UTC, datetime

import pytest
import structlog

from ballast_common.telemetry import (
    bind_request_context,
    configure_logging,
    get_logger,
    log_error,
)
from tests.common.conftest import LogLines

REQUIRED = (
    "timestamp",
    "level",
    "event",
    "logger",
    "service",
    "trace_id",
    "span_id",
    "correlation_id",
)


def _check_shape(line: dict[str, object]) -> None:
    for key in REQUIRED:
        assert key in line, f"{key} missing from {line}"
    assert list(line)[: len(REQUIRED)] == list(REQUIRED)
    stamp = datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00"))
    assert stamp.utcoffset() == UTC.utcoffset(None)
    assert line["service"] == "test-svc"


class TestShape:
    def test_every_line_has_the_standard_fields_inside_and_outside_requests(
        self, log_lines: LogLines
    ) -> None:
        log = get_logger("ballast.test")
        log.info("outside")
        with bind_request_context(correlation_id="corr-1", user_id="u-7") as ctx:
            log.warning("inside", job="j1")
            logging.getLogger("sqlalchemy.engine").warning("stdlib inside")
        logging.getLogger("alembic").info("stdlib outside")

        lines = log_lines()
        assert [line["event"] for line in lines] == [
            "outside",
            "inside",
            "stdlib inside",
            "stdlib outside",
        ]
        for line in lines:
            _check_shape(line)
        outside, inside, stdlib_inside, stdlib_outside = lines
        # Outside a bound context the ids are explicit nulls (documented choice).
        for line in (outside, stdlib_outside):
            assert (line["trace_id"], line["span_id"], line["correlation_id"]) == (
                None,
                None,
                None,
            )
            assert "user_id" not in line
        for line in (inside, stdlib_inside):
            assert line["trace_id"] == ctx["trace_id"]
            assert line["span_id"] == ctx["span_id"]
            assert line["correlation_id"] == "corr-1"
            assert line["user_id"] == "u-7"
        assert inside["level"] == "warning"
        assert inside["logger"] == "ballast.test"
        assert inside["job"] == "j1"
        assert stdlib_inside["logger"] == "sqlalchemy.engine"
        assert stdlib_outside["level"] == "info"

    def test_get_logger_defaults_to_the_calling_module(
        self, log_lines: LogLines
    ) -> None:
        get_logger().info("named")
        assert log_lines()[0]["logger"] == __name__

    def test_positional_args_contextvars_and_extra(self, log_lines: LogLines) -> None:
        get_logger("x").info("hello %s", "world")
        structlog.contextvars.bind_contextvars(job_id="job-42")
        try:
            get_logger("x").info("bound")
        finally:
            structlog.contextvars.clear_contextvars()
        logging.getLogger("y").info("extra", extra={"rows": 5})
        hello, bound, extra = log_lines()
        assert hello["event"] == "hello world"
        assert bound["job_id"] == "job-42"
        assert extra["rows"] == 5

    def test_level_filtering(self, log_lines: LogLines) -> None:
        get_logger("x").debug("hidden")
        logging.getLogger("z").debug("hidden too")
        get_logger("x").info("shown")
        assert [line["event"] for line in log_lines()] == ["shown"]

    def test_debug_level(self) -> None:
        stream = io.StringIO()
        configure_logging("test-svc", level="debug", stream=stream)
        try:
            get_logger("x").debug("visible")
            assert json.loads(stream.getvalue())["level"] == "debug"
        finally:
            configure_logging("test-svc", level="INFO", stream=io.StringIO())

    def test_unknown_level(self) -> None:
        with pytest.raises(ValueError, match="unknown log level"):
            configure_logging("svc", level="LOUD")


class TestIdempotence:
    def test_configuring_twice_keeps_one_handler(self, log_stream: io.StringIO) -> None:
        second = io.StringIO()
        configure_logging("test-svc", stream=second)
        configure_logging("test-svc", stream=second)
        ours = [h for h in logging.getLogger().handlers if h.get_name() == "ballast"]
        assert len(ours) == 1
        get_logger("x").info("once")
        logging.getLogger("y").info("once too")
        assert len(second.getvalue().splitlines()) == 2
        assert log_stream.getvalue() == ""

    def test_uvicorn_loggers_propagate_into_our_handler(self) -> None:
        uvicorn = logging.getLogger("uvicorn.access")
        uvicorn.addHandler(logging.StreamHandler(io.StringIO()))
        uvicorn.propagate = False
        stream = io.StringIO()
        configure_logging("test-svc", stream=stream)
        try:
            assert uvicorn.handlers == []
            assert uvicorn.propagate
            uvicorn.info('127.0.0.1 - "GET /healthz" 200')
            assert json.loads(stream.getvalue())["logger"] == "uvicorn.access"
        finally:
            configure_logging("test-svc", stream=io.StringIO())


class TestMasking:
    def test_message_and_kwargs(self, log_lines: LogLines) -> None:
        token = "8f14e45fceea167a5a36dedd4bea2543"
        get_logger("x").info(
            "signup jane@example.com from +49 30 1234567",
            password="hunter2",
            headers={"Authorization": "Bearer abcdefghijklmnop", "X-Request-Id": "r1"},
            note=f"token {token}",
            user={"email": "bob@example.org", "id": 1234567890123},
            created_at="2024-01-15T10:30:00+00:00",
        )
        line = log_lines()[0]
        raw = json.dumps(line)
        for secret in (
            "jane@example.com",
            "1234567",
            "hunter2",
            "abcdefghijklmnop",
            token,
            "bob@example.org",
        ):
            assert secret not in line["event"]
            assert secret not in raw.replace("1234567890123", "")
        assert line["event"] == "signup j***@example.com from ***67"
        assert line["password"] == "***"
        assert line["headers"] == {"Authorization": "***", "X-Request-Id": "r1"}
        assert line["user"] == {"email": "b***@example.org", "id": 1234567890123}
        assert line["created_at"] == "2024-01-15T10:30:00+00:00"

    def test_stdlib_message_args_and_extra(self, log_lines: LogLines) -> None:
        logging.getLogger("uvicorn.error").warning(
            "login failed for %s", "jane@example.com", extra={"api_key": "k1"}
        )
        line = log_lines()[0]
        assert line["event"] == "login failed for j***@example.com"
        assert line["api_key"] == "***"

    def test_structlog_exception_traceback(self, log_lines: LogLines) -> None:
        def fail(password: str) -> None:
            raise ValueError(
                f"bad login jane@example.com password={password} phone 555-123-4567"
            )

        secret = "".join(
            ["hun", "ter2"]
        )  # built at runtime: the traceback shows source lines
        try:
            fail(secret)
        except ValueError:
            get_logger("x").exception("login_failed", email="jane@example.com")
        line = log_lines()[0]
        assert line["level"] == "error"
        assert "Traceback (most recent call last)" in line["exception"]
        assert "in fail" in line["exception"]
        raw = json.dumps(line)
        for secret in ("jane@example.com", "hunter2", "555-123-4567"):
            assert secret not in raw
        assert "j***@example.com" in line["exception"]
        assert "password=***" in line["exception"]

    def test_stdlib_exception_traceback(self, log_lines: LogLines) -> None:
        try:
            raise RuntimeError(
                "connect postgresql://app:s3cr3t@db/app failed for bob@example.org"
            )
        except RuntimeError:
            logging.getLogger("sqlalchemy.pool").exception("pool error")
        line = log_lines()[0]
        assert "RuntimeError" in line["exception"]
        assert "s3cr3t" not in line["exception"]
        assert "bob@example.org" not in line["exception"]
        assert line["trace_id"] is None

    def test_unknown_objects_are_stringified_before_masking(
        self, log_lines: LogLines
    ) -> None:
        class User:
            def __repr__(self) -> str:
                return "User(email='jane@example.com')"

            __str__ = __repr__

        get_logger("x").info(
            "obj", user=User(), items={User()}, when=datetime(2024, 1, 15, tzinfo=UTC)
        )
        line = log_lines()[0]
        assert line["user"] == "User(email='j***@example.com')"
        assert line["items"] == ["User(email='j***@example.com')"]
        assert line["when"] == "2024-01-15 00:00:00+00:00"


def test_console_format_is_masked_and_human_readable() -> None:
    stream = io.StringIO()
    configure_logging("test-svc", fmt="console", stream=stream)
    try:
        try:
            raise KeyError("jane@example.com")
        except KeyError:
            get_logger("x").exception("lookup_failed", phone="555-123-4567")
        out = stream.getvalue()
        assert "lookup_failed" in out
        assert "Traceback" in out
        assert "jane@example.com" not in out
        assert "555-123-4567" not in out
        assert "phone=***67" in out
        with pytest.raises(json.JSONDecodeError):
            json.loads(out.splitlines()[0])
    finally:
        configure_logging("test-svc", stream=io.StringIO())


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "human"), [(_Terminal(), True), (io.StringIO(), False)]
)
def test_auto_format_is_console_on_a_terminal_and_json_otherwise(
    stream: io.StringIO, human: bool
) -> None:
    configure_logging("test-svc", fmt="auto", stream=stream)
    try:
        get_logger("x").info("started", port=8501)
        first = stream.getvalue().splitlines()[0]
        if human:
            assert "started" in first
            assert "port=8501" in first
            with pytest.raises(json.JSONDecodeError):
                json.loads(first)
        else:
            assert json.loads(first)["event"] == "started"
    finally:
        configure_logging("test-svc", stream=io.StringIO())


def test_auto_is_the_default_format() -> None:
    from ballast_common.config import AppConfig

    assert AppConfig.model_fields["log_format"].default == "auto"


class TestLogError:
    def test_inside_a_request(self, log_lines: LogLines) -> None:
        def inner() -> None:
            raise ValueError("user jane@example.com sent token=abc123")

        with bind_request_context(correlation_id="c-9") as ctx:
            try:
                try:
                    inner()
                except ValueError as exc:
                    raise LookupError("wrapped") from exc
            except LookupError as exc:
                trace_id = log_error(
                    exc, {"email": "jane@example.com", "password": "x", "form_id": "f1"}
                )
        assert trace_id == ctx["trace_id"]
        line = log_lines()[0]
        _check_shape(line)
        assert line["event"] == "error"
        assert line["level"] == "error"
        assert line["error_type"] == "LookupError"
        assert line["error_message"] == "wrapped"
        assert line["trace_id"] == trace_id
        assert line["span_id"] == ctx["span_id"]
        assert line["correlation_id"] == "c-9"
        assert line["ctx"] == {
            "email": "j***@example.com",
            "password": "***",
            "form_id": "f1",
        }
        stack = line["stack"]
        assert "in inner" in stack
        assert "The above exception was the direct cause" in stack
        assert "j***@example.com" in stack
        assert "jane@example.com" not in stack
        assert "abc123" not in stack

    def test_outside_a_request_generates_an_id(self, log_lines: LogLines) -> None:
        class CustomError(Exception):
            pass

        trace_id = log_error(CustomError("never raised"))
        assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
        line = log_lines()[0]
        assert line["trace_id"] == trace_id
        assert re.fullmatch(r"[0-9a-f]{16}", line["span_id"])
        assert line["correlation_id"] is None
        assert line["ctx"] == {}
        assert line["error_type"].startswith(CustomError.__module__)
        assert line["error_type"].endswith(".CustomError")
        assert "CustomError: never raised" in line["stack"]
        assert log_error(CustomError("again")) != trace_id
