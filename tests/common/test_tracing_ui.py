"""The UI's user actions as spans (ballast_ui.metrics), api calls inside them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from ballast_common.telemetry import configure_tracing, shutdown_tracing
from ballast_ui.metrics import end_action, note_trigger, take_trigger, timed_run


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    configure_tracing("ui", processor=SimpleSpanProcessor(exporter))
    yield exporter
    shutdown_tracing()


def test_a_callback_starts_the_action_and_the_run_after_it_ends_it(
    spans: InMemorySpanExporter,
) -> None:
    state: dict[str, Any] = {}
    note_trigger(state, "button")  # the Save callback
    in_callback = trace.get_current_span()
    assert in_callback.is_recording()
    note_trigger(state, "widget")  # a second note in the same action: same span
    assert trace.get_current_span() is in_callback
    with timed_run("projects", take_trigger(state, "widget")):
        assert trace.get_current_span() is in_callback
    (span,) = spans.get_finished_spans()
    assert span.name == "ui widget projects"
    assert span.attributes == {
        "ballast.ui.trigger": "widget",
        "ballast.ui.page": "projects",
    }
    assert not trace.get_current_span().get_span_context().is_valid


def test_a_run_without_callback_is_its_own_action_and_polls_are_none(
    spans: InMemorySpanExporter,
) -> None:
    with timed_run("status", "poll"):
        assert not trace.get_current_span().is_recording()
    with timed_run("jobs", "nav"):
        assert trace.get_current_span().is_recording()
    end_action("jobs", "nav")  # nothing in progress any more: a no-op
    assert [s.name for s in spans.get_finished_spans()] == ["ui nav jobs"]


def test_off_no_span_is_made() -> None:
    state: dict[str, Any] = {}
    note_trigger(state, "button")
    assert state["_ballast_trigger"] == "button"
    assert not trace.get_current_span().get_span_context().is_valid
    end_action("projects", "button")
