"""kombu's filesystem transport with atomic message files (the embedded broker).

kombu writes a message by creating ``<ts>_<uuid>.<queue>.msg`` and then filling it,
while a consumer lists the folder, moves the first matching file away and reads it.
A consumer can take the file between the two steps and read it empty; the JSON error
then stops the worker's consumer. Here a message is written under a name no consumer
matches (``….msg.part``) and renamed into place once complete (``os.replace`` is atomic
within a folder).
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

ALIAS = "filesystem"


class Channel(filesystem.Channel):
    """Writes each message to a temporary name, then renames it into the queue."""

    def _put(  # type: ignore[override]  # kombu's stub lacks **kwargs
        self, queue: str, payload: Any, **kwargs: Any
    ) -> None:
        # kombu's name: consumers take files in name order (time first).
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        part = final + ".part"
        try:
            with open(part, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(part, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


def install() -> None:
    """Make ``filesystem://`` URLs use this transport in this process."""
    TRANSPORT_ALIASES[ALIAS] = f"{__name__}:Transport"
