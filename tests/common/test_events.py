from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from ballast_common.telemetry import (
    Event,
    bind_request_context,
    clear_event_sinks,
    metric_label,
    register_event_names,
    register_event_sink,
    track,
    validate_event_name,
)
from tests.common.conftest import LogLines

pytestmark = pytest.mark.usefixtures("no_event_sinks")


def _count(event: str) -> float:
    return REGISTRY.get_sample_value("ballast_events_total", {"event": event}) or 0.0


@pytest.mark.parametrize(
    "name", ["form_saved", "jobs.cancel_requested", "a", "ui.page_view2", "x" * 100]
)
def test_valid_names(name: str) -> None:
    assert validate_event_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "FormSaved",
        "form-saved",
        "form saved",
        ".x",
        "x.",
        "x..y",
        "2fa_enabled",
        "x" * 101,
        "é",
    ],
)
def test_invalid_names_raise_before_anything_happens(
    name: str, log_lines: LogLines
) -> None:
    seen: list[Event] = []
    register_event_sink(seen.append)
    with pytest.raises(ValueError, match="invalid event name"):
        track(name, {"a": 1})
    assert seen == []
    assert log_lines() == []


def test_track_logs_counts_and_hands_masked_event_to_sinks(log_lines: LogLines) -> None:
    seen: list[Event] = []
    register_event_sink(seen.append)
    register_event_names("form.saved")
    before = _count("form.saved")
    with bind_request_context(user_id="u1", correlation_id="c1") as ctx:
        track(
            "form.saved",
            {
                "form_id": "f1",
                "email": "jane@example.com",
                "password": "pw",
                "note": "call 555-123-4567",
            },
            source="ui",
            session_id="s-1",
        )
    assert _count("form.saved") == before + 1

    (event,) = seen
    assert event.type == "form.saved"
    assert event.source == "ui"
    assert event.data == {
        "form_id": "f1",
        "email": "j***@example.com",
        "password": "***",
        "note": "call ***67",
    }
    assert (event.user_id, event.session_id, event.correlation_id, event.trace_id) == (
        "u1",
        "s-1",
        "c1",
        ctx["trace_id"],
    )
    assert event.timestamp.tzinfo is UTC
    assert abs((datetime.now(UTC) - event.timestamp).total_seconds()) < 5
    assert len(event.id) == 36

    (line,) = log_lines()
    assert line["event"] == "track"
    assert line["name"] == "form.saved"
    assert line["event_id"] == event.id
    assert line["props"] == event.data
    assert line["trace_id"] == ctx["trace_id"]
    assert line["correlation_id"] == "c1"


def test_track_without_props_or_context(log_lines: LogLines) -> None:
    seen: list[Event] = []
    register_event_sink(seen.append)
    track("app_started")
    assert seen[0].data == {}
    assert seen[0].user_id is None
    assert seen[0].correlation_id is None
    assert log_lines()[0]["props"] == {}


def test_a_failing_sink_is_logged_and_does_not_break_the_caller(
    log_lines: LogLines,
) -> None:
    seen: list[str] = []

    @register_event_sink
    def broken(event: Event) -> None:
        raise RuntimeError(f"db down while saving {event.type} for jane@example.com")

    register_event_sink(lambda event: seen.append(event.type))
    track("page_view", {"page": "home"})
    assert seen == ["page_view"]  # later sinks still run
    track_line, error_line = log_lines()
    assert track_line["event"] == "track"
    assert error_line["event"] == "error"
    assert error_line["error_type"] == "RuntimeError"
    assert error_line["ctx"]["event"] == "page_view"
    assert "broken" in error_line["ctx"]["sink"]
    assert "jane@example.com" not in error_line["stack"]


def test_clear_event_sinks() -> None:
    seen: list[Event] = []
    register_event_sink(seen.append)
    clear_event_sinks()
    track("ignored")
    assert seen == []


def test_event_defaults() -> None:
    first = Event(type="x", data={})
    second = Event(type="x", data={})
    assert first.id != second.id
    assert first.source == "app"
    assert first.timestamp.tzinfo is UTC
    with pytest.raises(AttributeError):
        first.type = "y"  # type: ignore[misc]


def _labels() -> set[str]:
    return {
        sample.labels["event"]
        for metric in REGISTRY.collect()
        if metric.name == "ballast_events" or metric.name == "ballast_events_total"
        for sample in metric.samples
        if sample.name == "ballast_events_total"
    }


def test_unknown_event_names_never_grow_the_metric_labels() -> None:
    # Any client holding events:write may send names: the label set stays bounded.
    track("workbench.page_viewed", {"page": "home"})
    before = _count("other")
    names = [f"made_up.event_{i}" for i in range(300)]
    for name in names:
        track(name)
    assert _count("other") == before + 300
    assert not _labels() & set(names)
    assert metric_label("workbench.page_viewed") == "workbench.page_viewed"
    assert metric_label("made_up.event_1") == "other"


def test_an_app_registers_its_own_event_names() -> None:
    register_event_names("reports.exported")
    before = _count("reports.exported")
    track("reports.exported")
    assert _count("reports.exported") == before + 1
    with pytest.raises(ValueError, match="invalid event name"):
        register_event_names("Not A Name")
