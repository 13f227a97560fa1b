import asyncio
import re

import pytest

from ballast_common.telemetry import (
    bind_request_context,
    current_context,
    format_traceparent,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    set_user_id,
    user_id_var,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_new_ids_are_lowercase_hex_of_the_right_length() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", new_trace_id())
    assert re.fullmatch(r"[0-9a-f]{16}", new_span_id())
    assert new_trace_id() != new_trace_id()


class TestParseTraceparent:
    def test_valid(self) -> None:
        assert parse_traceparent(f"00-{TRACE}-{SPAN}-01") == (TRACE, SPAN)
        assert parse_traceparent(f"  00-{TRACE}-{SPAN}-00 ") == (TRACE, SPAN)

    @pytest.mark.parametrize(
        "header",
        [
            None,
            "",
            f"00-{'0' * 32}-{SPAN}-01",
            f"00-{TRACE}-{'0' * 16}-01",
            f"01-{TRACE}-{SPAN}-01",
            f"ff-{TRACE}-{SPAN}-01",
            f"00-{TRACE.upper()}-{SPAN}-01",
            f"00-{TRACE[:-1]}-{SPAN}-01",
            f"00-{TRACE}-{SPAN}1-01",
            f"00-{TRACE}-{SPAN}-1",
            f"00-{TRACE}-{SPAN}",
            f"00_{TRACE}_{SPAN}_01",
            f"00-{TRACE[:-1]}g-{SPAN}-01",
        ],
    )
    def test_invalid(self, header: str | None) -> None:
        assert parse_traceparent(header) is None


def test_format_traceparent_round_trips_and_rejects_bad_ids() -> None:
    header = format_traceparent(TRACE, SPAN)
    assert header == f"00-{TRACE}-{SPAN}-01"
    assert parse_traceparent(header) == (TRACE, SPAN)
    assert format_traceparent(TRACE, SPAN, sampled=False).endswith("-00")
    with pytest.raises(ValueError, match="invalid"):
        format_traceparent("0" * 32, SPAN)
    with pytest.raises(ValueError, match="invalid"):
        format_traceparent(TRACE, "xyz")


class TestBindRequestContext:
    def test_outside_any_context_everything_is_none(self) -> None:
        assert set(current_context().values()) == {None}

    def test_generates_missing_ids_and_restores_on_exit(self) -> None:
        with bind_request_context(
            user_id="u1", ip="10.0.0.1", user_agent="ua"
        ) as bound:
            ctx = current_context()
            assert ctx == bound
            assert re.fullmatch(r"[0-9a-f]{32}", ctx["trace_id"] or "")
            assert re.fullmatch(r"[0-9a-f]{16}", ctx["span_id"] or "")
            assert ctx["correlation_id"]
            assert (ctx["user_id"], ctx["ip"], ctx["user_agent"]) == (
                "u1",
                "10.0.0.1",
                "ua",
            )
        assert set(current_context().values()) == {None}

    def test_uses_given_ids_and_nests(self) -> None:
        with bind_request_context(
            trace_id=TRACE, correlation_id="c-1", user_id="outer"
        ):
            with bind_request_context(correlation_id="c-2", span_id=SPAN):
                inner = current_context()
                assert inner["correlation_id"] == "c-2"
                assert inner["span_id"] == SPAN
                assert inner["trace_id"] != TRACE
                assert inner["user_id"] is None
            outer = current_context()
            assert (outer["trace_id"], outer["correlation_id"], outer["user_id"]) == (
                TRACE,
                "c-1",
                "outer",
            )

    def test_restores_when_the_block_raises(self) -> None:
        with pytest.raises(RuntimeError), bind_request_context(trace_id=TRACE):
            raise RuntimeError("boom")
        assert current_context()["trace_id"] is None

    def test_set_user_id_inside_a_context(self) -> None:
        with bind_request_context():
            token = set_user_id("u9")
            assert current_context()["user_id"] == "u9"
            user_id_var.reset(token)
            assert current_context()["user_id"] is None

    def test_concurrent_tasks_do_not_see_each_other(self) -> None:
        async def handler(name: str) -> tuple[str, str | None]:
            with bind_request_context(correlation_id=name):
                await asyncio.sleep(0.01)
                return name, current_context()["correlation_id"]

        async def main() -> list[tuple[str, str | None]]:
            return await asyncio.gather(*(handler(f"r{i}") for i in range(5)))

        for name, seen in asyncio.run(main()):
            assert name == seen
