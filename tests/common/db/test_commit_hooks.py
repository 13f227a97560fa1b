"""Changes committed outside a unit of work (the api's one-statement hot paths) reach the
same cache busting and commit listeners as a unit of work's."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from ballast_common.db import bust_after_commit, on_commit
from ballast_common.db import uow as uow_module


class FakeCache:
    def __init__(self, has_l2: bool = False) -> None:
        self.has_l2 = has_l2
        self.busted: list[tuple[str, ...]] = []
        self.threads: list[str] = []

    def bust(self, *tags: str) -> None:
        self.busted.append(tags)
        self.threads.append(threading.current_thread().name)


@pytest.fixture
def heard() -> Iterator[list[frozenset[str]]]:
    seen: list[frozenset[str]] = []
    listener = seen.append
    on_commit(listener)
    on_commit(listener)  # registering twice listens once
    yield seen
    uow_module._COMMIT_LISTENERS.remove(listener)


@pytest.mark.parametrize("has_l2", [False, True])
def test_bust_after_commit_busts_type_and_id_tags_and_tells_listeners(
    heard: list[frozenset[str]], monkeypatch: pytest.MonkeyPatch, has_l2: bool
) -> None:
    cache = FakeCache(has_l2)
    monkeypatch.setattr(uow_module, "current_cache", lambda: cache)
    asyncio.run(bust_after_commit([("forms", "1"), ("drafts", "2"), ("drafts", "3")]))
    assert cache.busted == [("drafts", "drafts:2", "drafts:3", "forms", "forms:1")]
    assert heard == [frozenset({"drafts", "drafts:2", "drafts:3", "forms", "forms:1"})]
    # With Redis the bust waits for the replicas: off the event loop's thread. An
    # L1-only bust is a dictionary update: inline.
    on_loop = cache.threads == [threading.main_thread().name]
    assert on_loop is not has_l2


def test_nothing_changed_busts_nothing(
    heard: list[frozenset[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = FakeCache()
    monkeypatch.setattr(uow_module, "current_cache", lambda: cache)
    asyncio.run(bust_after_commit([]))
    monkeypatch.setattr(uow_module, "current_cache", lambda: None)
    asyncio.run(bust_after_commit([("forms", "1")]))
    assert cache.busted == []
    assert heard == [frozenset({"forms", "forms:1"})]
