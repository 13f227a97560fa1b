import asyncio
import re

import pytest

from ballast_common.telemetry import (
    bind_request_context,
    current_context,
    new_span_id,
    new_trace_id,
    request_span,
    set_user_id,
    traceparent,
    user_id_var,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_new_ids_are_lowercase_hex_of_the_right_length() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", new_trace_id())
    assert re.fullmatch(r"[0-9a-f]{16}", new_span_id())
    assert new_trace_id() != new_trace_id()


def test_request_span_honours_a_valid_traceparent_and_ignores_a_bad_one() -> None:
    with request_span({"traceparent": f"00-{TRACE}-{SPAN}-01"}) as (trace_id, span_id):
        assert trace_id == TRACE
        assert span_id != SPAN  # the parent's span is not ours
        assert traceparent() == f"00-{TRACE}-{span_id}-01"
        assert current_context()["trace_id"] == TRACE
    for bad in (f"00-{'0' * 32}-{SPAN}-01", f"00-{TRACE.upper()}-{SPAN}-01", "junk"):
        with request_span({"traceparent": bad}) as (trace_id, _):
            assert trace_id != TRACE
            assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    assert traceparent() is None


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
