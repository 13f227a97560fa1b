"""The embedded broker's message files appear complete or not at all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection
from kombu.transport import TRANSPORT_ALIASES

from ballast_common import brokerfs


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kombu's control folder (exchange bindings); its default is ./control.

    One per process, like kombu's in-memory broker state, which remembers bindings
    across connections and so would not write them into a second folder.
    """
    return tmp_path_factory.mktemp("control")


@pytest.fixture
def conn(tmp_path: Path, control: Path) -> Iterator[Connection]:
    brokerfs.install()
    options = {
        "data_folder_in": str(tmp_path),
        "data_folder_out": str(tmp_path),
        "control_folder": str(control),
    }
    with Connection("filesystem://", transport_options=options) as c:
        yield c


def test_filesystem_urls_use_the_atomic_transport(conn: Connection) -> None:
    assert TRANSPORT_ALIASES["filesystem"] == "ballast_common.brokerfs:Transport"
    assert isinstance(conn.transport, brokerfs.Transport)


def test_a_message_file_is_renamed_into_place_whole(
    conn: Connection, tmp_path: Path
) -> None:
    queue = conn.SimpleQueue("jobs")
    queue.put({"n": 1})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1
    assert files[0].endswith(".jobs.msg")
    assert json.loads((tmp_path / files[0]).read_text())["body"]
    assert queue.get(timeout=1).payload == {"n": 1}
    queue.close()


def test_a_file_still_being_written_is_not_taken(
    conn: Connection, tmp_path: Path
) -> None:
    # What a reader sees while a producer is between open() and write().
    (tmp_path / "1_x.jobs.msg.part").write_bytes(b"")
    queue = conn.SimpleQueue("jobs")
    with pytest.raises(queue.Empty):
        queue.get(timeout=0.2)
    queue.put({"n": 2})
    assert queue.get(timeout=1).payload == {"n": 2}
    queue.close()
