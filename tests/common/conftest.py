import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from ballast_common.telemetry import clear_event_sinks, configure_logging

LogLines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Configure JSON logging into a StringIO; undo the global changes afterwards."""
    root = logging.getLogger()
    previous_level = root.level
    stream = io.StringIO()
    configure_logging("test-svc", level="INFO", stream=stream)
    yield stream
    for handler in list(root.handlers):
        if handler.get_name() == "ballast":
            root.removeHandler(handler)
    root.setLevel(previous_level)
    structlog.reset_defaults()


@pytest.fixture
def log_lines(log_stream: io.StringIO) -> LogLines:
    """Return a function parsing every line written so far (each must be JSON)."""

    def parse() -> list[dict[str, Any]]:
        return [json.loads(line) for line in log_stream.getvalue().splitlines() if line]

    return parse


@pytest.fixture
def no_event_sinks() -> Iterator[None]:
    clear_event_sinks()
    yield
    clear_event_sinks()
