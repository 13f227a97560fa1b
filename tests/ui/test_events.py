"""Workbench events: queued without waiting, sent in batches per user, best effort."""

from __future__ import annotations

import ast
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from ballast_common.contracts.events import KNOWN_EVENTS
from ballast_common.errors import AuthenticationError
from ballast_ui.client import ApiUnavailable
from ballast_ui.events import EventSender

UI_SRC = Path(__file__).resolve().parents[2] / "services" / "ui" / "src" / "ballast_ui"


class Api:
    """One user's client: records the batches it was sent, or fails as told."""

    def __init__(self, *failures: Exception) -> None:
        self.batches: list[list[Mapping[str, Any]]] = []
        self.failures = list(failures)

    def post_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.batches.append(list(events))


def _dropped(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "ballast_ui_events_dropped_total", {"reason": reason}
    )
    return value or 0.0


def test_events_go_in_one_batch_per_user_and_request_size() -> None:
    events = EventSender(flush_s=3600, max_batch=2)
    alice, bob = Api(), Api()
    for page in ("home", "projects", "data"):
        events.track(alice.post_events, "workbench.page_viewed", {"page": page})
    events.track(bob.post_events, "workbench.signed_in", session_id="s" * 100)
    assert events.pending() == 4
    assert events.flush() == 4
    assert [[e["props"]["page"] for e in b] for b in alice.batches] == [
        ["home", "projects"],
        ["data"],
    ]
    assert bob.batches == [
        [{"event": "workbench.signed_in", "props": {}, "session_id": "s" * 64}]
    ]
    assert events.pending() == 0


def test_an_unreachable_api_keeps_events_for_a_few_tries_then_drops_them() -> None:
    events = EventSender(flush_s=3600, tries=3)
    down = ApiUnavailable("api down")
    api = Api(down, down)
    events.track(api.post_events, "workbench.form_saved", {"form": "project"})
    assert events.flush() == 0
    assert events.flush() == 0
    assert events.pending() == 1
    assert events.flush() == 1
    assert api.batches == [
        [{"event": "workbench.form_saved", "props": {"form": "project"}}]
    ]
    before = _dropped("unreachable")
    gone = Api(down, down, down)
    events.track(gone.post_events, "workbench.form_saved")
    for _ in range(3):
        events.flush()
    assert events.pending() == 0
    assert _dropped("unreachable") == before + 1
    assert gone.batches == []


def test_a_refused_batch_is_dropped_not_retried() -> None:
    events = EventSender(flush_s=3600)
    api = Api(AuthenticationError("signed out"))
    before = _dropped("refused")
    events.track(api.post_events, "workbench.page_viewed")
    events.track(api.post_events, "workbench.page_viewed")
    assert events.flush() == 0
    assert events.pending() == 0
    assert _dropped("refused") == before + 2


def test_the_queue_is_bounded_and_the_oldest_go_first() -> None:
    events = EventSender(flush_s=3600, max_queued=3)
    api = Api()
    before = _dropped("queue_full")
    for i in range(5):
        events.track(api.post_events, "workbench.page_viewed", {"i": i})
    assert events.pending() == 3
    assert _dropped("queue_full") == before + 2
    events.flush()
    assert [e["props"]["i"] for e in api.batches[0]] == [2, 3, 4]


def test_a_bad_event_name_is_a_bug_of_the_caller() -> None:
    with pytest.raises(ValueError, match="invalid event name"):
        EventSender().track(Api().post_events, "Page Viewed")


def test_the_background_thread_sends_without_being_asked() -> None:
    events = EventSender(flush_s=0.05)
    api = Api()
    events.track(api.post_events, "workbench.signed_in")
    deadline = time.monotonic() + 10
    while not api.batches and time.monotonic() < deadline:
        time.sleep(0.02)
    assert api.batches == [[{"event": "workbench.signed_in", "props": {}}]]


def _tracked_names() -> set[str]:
    """Every event name the UI's code passes to ``track(ctx, "...")``."""
    names = set()
    for path in UI_SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "track"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
            ):
                names.add(node.args[1].value)
    return names


def test_every_event_the_workbench_tracks_is_counted_under_its_own_label() -> None:
    tracked = _tracked_names()
    # The journey the dashboard's business panels follow.
    assert {
        "workbench.signed_in",
        "workbench.page_viewed",
        "workbench.project_opened",
        "workbench.form_saved",
    } <= tracked
    assert tracked <= KNOWN_EVENTS
