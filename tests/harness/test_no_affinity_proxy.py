"""The replica tests' proxy without affinity (tests/e2e/no_affinity_proxy.py) leaves
nothing behind when it stops, even with a connection whose client reads nothing."""

from __future__ import annotations

import gc
import socket
import threading
import time
import warnings
from collections.abc import Iterator

import pytest

from ballast_testing.servers import LOOPBACK, free_port
from tests.e2e.no_affinity_proxy import NoAffinityProxy


@pytest.fixture
def chatty_backend() -> Iterator[int]:
    """A loopback server that answers every connection with bytes until it is gone."""
    port = free_port()
    listener = socket.create_server((LOOPBACK, port))
    listener.settimeout(0.1)
    done = threading.Event()
    peers: list[socket.socket] = []

    def talk(conn: socket.socket) -> None:
        chunk = b"x" * 65536
        with conn:
            while not done.is_set():
                try:
                    conn.sendall(chunk)
                except OSError:
                    return

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            peers.append(conn)
            threading.Thread(target=talk, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    done.set()
    thread.join(5)
    listener.close()
    for conn in peers:
        conn.close()


def test_a_stalled_client_leaves_no_open_transport(chatty_backend: int) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with socket.socket() as client:
            with NoAffinityProxy([(LOOPBACK, chatty_backend)]) as proxy:
                client.connect((LOOPBACK, proxy.port))
                client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                # The backend talks, the client reads nothing: what the proxy holds
                # for the client fills up and stays.
                deadline = time.monotonic() + 10
                while not proxy.hits[chatty_backend] and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert proxy.hits[chatty_backend] == 1
                time.sleep(1.0)
                started = time.monotonic()
            stopped_s = time.monotonic() - started
        gc.collect()
    assert stopped_s < 5
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == [], [str(w.message) for w in leaks]
