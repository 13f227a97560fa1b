"""The write-behind outbox: debounce, coalescing, sequences, idempotent retries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from ballast_common.errors import AuthenticationError, ValidationError
from ballast_ui.client import ApiUnavailable, DraftItem, DraftResult
from ballast_ui.outbox import Outbox, OutboxPump, split_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeApi:
    """Applies batches like the api: idempotent per write id, newer seq wins."""

    def __init__(self) -> None:
        self.down = False
        self.lose_response = False
        self.reject: set[str] = set()
        self.calls: list[tuple[str, list[DraftItem]]] = []
        self.applied_ids: dict[str, list[DraftResult]] = {}
        self.store: dict[str, tuple[Any, int]] = {}
        self.effects = 0

    def __call__(self, items: Sequence[DraftItem], write_id: str) -> list[DraftResult]:
        self.calls.append((write_id, list(items)))
        if self.down:
            raise ApiUnavailable("down")
        if any(i.field in self.reject for i in items):
            raise ValidationError("bad value")
        if write_id not in self.applied_ids:
            out = []
            for i in items:
                key = f"{i.form_id}.{i.field}"
                old = self.store.get(key)
                applied = old is None or i.seq >= old[1]
                if applied:
                    self.store[key] = (i.value, i.seq)
                    self.effects += 1
                out.append(
                    DraftResult(
                        form_id=i.form_id, field=i.field, version=1, applied=applied
                    )
                )
            self.applied_ids[write_id] = out
        if self.lose_response:
            self.lose_response = False
            raise ApiUnavailable("response lost")
        return self.applied_ids[write_id]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def outbox(api: FakeApi, clock: Clock) -> Outbox:
    return Outbox(
        api,
        debounce_s=0.3,
        max_delay_s=2.0,
        base_backoff_s=0.5,
        max_backoff_s=4.0,
        clock=clock,
    )


class TestSplitKey:
    def test_splits_at_last_dot(self) -> None:
        assert split_key("projects.1234.name") == ("projects.1234", "name")

    @pytest.mark.parametrize("key", ["nodot", ".field", "form."])
    def test_rejects_bad_keys(self, key: str) -> None:
        with pytest.raises(ValueError, match="form_id"):
            split_key(key)


class TestDebounceAndCoalesce:
    def test_waits_for_quiet_time(
        self, outbox: Outbox, api: FakeApi, clock: Clock
    ) -> None:
        outbox.put("f.a", "x")
        assert not outbox.flush()
        assert api.calls == []
        assert outbox.status().label == "Saving…"
        clock.now += 0.31
        assert outbox.flush()
        assert len(api.calls) == 1
        assert outbox.status().label == "Saved"

    def test_coalesces_per_key_newest_wins(
        self, outbox: Outbox, api: FakeApi, clock: Clock
    ) -> None:
        for v in ("a", "ab", "abc"):
            outbox.put("f.name", v)
            clock.now += 0.1
        outbox.put("f.other", 1)
        clock.now += 0.5
        outbox.flush()
        ((_, items),) = api.calls
        assert {(i.field, i.value) for i in items} == {("name", "abc"), ("other", 1)}

    def test_max_delay_while_typing_continues(
        self, outbox: Outbox, api: FakeApi, clock: Clock
    ) -> None:
        for n in range(25):
            outbox.put("f.name", "x" * n)
            clock.now += 0.1
            outbox.flush()
        assert api.calls, "a batch must leave after max_delay_s even while typing"

    def test_sequences_increase_per_key(self, outbox: Outbox) -> None:
        first = outbox.put("f.a", 1)
        second = outbox.put("f.a", 2)
        assert second > first

    def test_seeded_sequence_is_respected(self, outbox: Outbox) -> None:
        outbox.seed_seq("f.a", 2_000_000_000)
        assert outbox.put("f.a", 1) == 2_000_000_001


class TestOffline:
    def test_keeps_everything_and_backs_off(
        self, outbox: Outbox, api: FakeApi, clock: Clock
    ) -> None:
        api.down = True
        outbox.put("f.a", 1)
        outbox.put("f.b", 2)
        clock.now += 0.5
        assert not outbox.flush()
        status = outbox.status()
        assert status.state == "offline"
        assert status.label == "Offline — 2 changes pending"
        # Backoff: not retried before the delay, retried after it.
        n = len(api.calls)
        clock.now += 0.1
        outbox.flush()
        assert len(api.calls) == n
        clock.now += 0.5
        outbox.flush()
        assert len(api.calls) == n + 1
        # Changes made while offline queue behind the batch.
        outbox.put("f.a", 10)
        assert outbox.status().pending == 2
        api.down = False
        clock.now += 10
        outbox.flush()
        clock.now += 10
        outbox.flush()
        assert outbox.status().state == "saved"
        assert api.store["f.a"][0] == 10
        assert api.store["f.b"][0] == 2

    def test_retry_keeps_write_id(
        self, outbox: Outbox, api: FakeApi, clock: Clock
    ) -> None:
        api.lose_response = True
        outbox.put("f.a", "v")
        clock.now += 0.5
        outbox.flush()
        clock.now += 5
        outbox.flush()
        ids = [w for w, _ in api.calls]
        assert len(ids) == 2
        assert ids[0] == ids[1]
        assert api.effects == 1
        assert outbox.status().state == "saved"

    def test_backoff_is_capped(
        self, outbox: Outbox, api: FakeApi, clock: Clock
    ) -> None:
        api.down = True
        outbox.put("f.a", 1)
        clock.now += 0.5
        for _ in range(10):
            outbox.flush()
            clock.now += 100
        outbox.flush()
        retry = outbox.status().retry_in_s
        assert retry is not None
        assert retry <= 4.0

    def test_signed_out_waits_for_new_sender(
        self, outbox: Outbox, clock: Clock
    ) -> None:
        def expired(_items: Sequence[DraftItem], _write_id: str) -> list[DraftResult]:
            raise AuthenticationError("session expired")

        outbox.set_send(expired)
        outbox.put("f.a", 1)
        clock.now += 0.5
        outbox.flush()
        assert outbox.status().label == "Signed out — 1 change pending"
        clock.now += 100
        assert not outbox.ready()
        fresh = FakeApi()
        outbox.set_send(fresh)
        outbox.flush()
        assert fresh.store["f.a"] == (1, fresh.store["f.a"][1])
        assert outbox.status().state == "saved"


class TestErrors:
    def test_one_invalid_value_does_not_block_others(
        self, outbox: Outbox, api: FakeApi, clock: Clock
    ) -> None:
        api.reject = {"bad"}
        outbox.put("f.bad", "x" * 10)
        outbox.put("f.good", "ok")
        clock.now += 0.5
        outbox.flush()
        assert api.store["f.good"][0] == "ok"
        assert "f.bad" not in api.store
        assert outbox.status().state == "error"

    def test_acks_are_reported(self, api: FakeApi, clock: Clock) -> None:
        seen: list[dict[str, Any]] = []
        box = Outbox(api, clock=clock, on_ack=lambda acked: seen.append(dict(acked)))
        box.put("f.a", "v")
        clock.now += 1
        box.flush()
        assert seen == [{"f.a": "v"}]
        assert box.acked == {"f.a": "v"}


class TestPump:
    def test_flushes_in_background(self, api: FakeApi) -> None:
        box = Outbox(api, debounce_s=0.01)
        pump = OutboxPump(interval_s=0.01, workers=1)
        try:
            pump.register(box)
            box.put("f.a", datetime.now(UTC).isoformat())
            assert box.wait_idle(5)
        finally:
            pump.stop()
        assert "f.a" in api.store


def test_urgent_put_skips_the_debounce() -> None:
    api, clock = FakeApi(), Clock()
    box = Outbox(api, debounce_s=0.3, clock=clock)
    box.put("f.text", "typing")
    assert not box.ready()
    box.put("f.status", "done", urgent=True)
    assert box.ready()
    assert box.flush()
    assert api.store["f.status"][0] == "done"
    box.put("f.text", "more")
    assert not box.ready()  # urgency ends with the batch it was sent in


def test_pump_drain_sends_other_sessions_of_the_same_user() -> None:
    api = FakeApi()
    pump = OutboxPump(interval_s=60)  # the thread never ticks during the test
    try:
        old, new, stranger = (Outbox(api, debounce_s=60) for _ in range(3))
        old.owner, new.owner, stranger.owner = "u1", "u1", "u2"
        for box in (old, new, stranger):
            pump.register(box)
        old.put("f.a", 1)
        stranger.put("f.b", 2)
        assert pump.drain("u1", exclude=new, timeout_s=2.0)
        assert api.store == {"f.a": (1, api.store["f.a"][1])}
        api.down = True
        old.put("f.a", 3)
        assert not pump.drain("u1", exclude=new, timeout_s=2.0)  # gives up at once
        assert old.pending_values() == {"f.a": 3}
    finally:
        pump.stop()
