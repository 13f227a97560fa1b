"""Product events (track) the UI reports."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

# The rule for event names, shared by the api and `ballast_common.telemetry.track`:
# snake_case segments, optionally dotted: "form_saved", "jobs.cancel_requested".
EVENT_NAME_PATTERN = r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*$"
MAX_EVENT_NAME_LENGTH = 100

# The events the product emits: the Workbench's journey (ballast_ui tracks them). Only
# these become values of the ``event`` label of ``ballast_events_total``; any other
# valid name is stored all the same but counted as OTHER_EVENT, so that no client can
# grow the metric's label set without bound. Apps add theirs with
# `ballast_common.telemetry.register_event_names`.
KNOWN_EVENTS = frozenset(
    {
        "workbench.signed_in",
        "workbench.page_viewed",
        "workbench.project_opened",
        "workbench.form_saved",
        "workbench.dataset_imported",
        "workbench.analysis_started",
    }
)
OTHER_EVENT = "other"


class EventIn(BaseModel):
    # The rule track() applies, checked here so no event is stored that it refuses.
    event: str = Field(
        min_length=1, max_length=MAX_EVENT_NAME_LENGTH, pattern=EVENT_NAME_PATTERN
    )
    props: dict[str, Any] = Field(default_factory=dict)
    session_id: str | None = Field(default=None, max_length=64)


class EventBatch(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=200)
