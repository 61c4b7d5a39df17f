"""The service API client against the real relay."""

from __future__ import annotations

import pytest

from tests.conftest import Relay
from tally_client import (
    InvalidInput,
    NotFound,
    NotParticipant,
    TallyClient,
    Unauthorized,
    Unreachable,
    client_id,
    is_client_id,
    staff_token,
)


def client(relay: Relay, **kwargs) -> TallyClient:  # type: ignore[no-untyped-def]
    return TallyClient(relay.url, relay.key, **kwargs)


def test_every_call_of_the_service_api(relay: Relay) -> None:
    tally = client(relay)
    report = tally.mirror_staff([{"id": "dave", "name": "Dave Jones"}, {"id": "alice", "name": "Alice Martin"}])
    assert report == {"added": 1, "changed": 1, "deactivated_missing": 0}
    group = tally.create_group("Ward 3", ["alice", "bob"], client_id="ward-3")["conversation"]
    again = tally.create_group("Ward 3", ["alice", "bob"], client_id="ward-3")["conversation"]
    assert group["id"] == again["id"], "a retried create makes one group"
    tally.add_participants(group["id"], ["dave"])
    posted = tally.post_message(conversation=group["id"], sender="alice", body="Hello @bob", client_id="m-1")
    assert posted["message"]["body"] == "Hello @bob"
    tally.post_notice(conversation=group["id"], title="Shift change", text="Nights at 22:00")
    direct = tally.post_message(direct=["alice", "carol"], sender="carol", body="Room 4?")
    file = tally.upload_attachment(b"%PDF-1.4 results", name="results.pdf", uploader="alice")
    tally.post_message(direct=["alice", "carol"], sender="alice", attachments=[file["id"]], reply_to=direct["message"]["id"])
    tally.remove_participant(group["id"], "dave")
    bob = tally.unread("bob")
    # The group's notices (created, dave added, dave removed), alice's message, the notice.
    assert bob["total"] == {"unread": 5, "mentions": 1}
    carol = tally.unread("carol")
    assert carol["total"]["unread"] == 1
    assert tally.health()["offset"] > 0


def test_refusals_raise_the_class_of_their_code(relay: Relay) -> None:
    tally = client(relay)
    group = tally.create_group("Front desk", ["alice", "bob"])["conversation"]
    with pytest.raises(NotParticipant) as e:
        tally.post_message(conversation=group["id"], sender="carol", body="hi")
    assert e.value.status == 403 and not e.value.retryable
    with pytest.raises(NotFound):
        tally.unread("nobody")
    with pytest.raises(InvalidInput) as bad:
        tally.post_message(conversation=group["id"], sender="alice", body="x" * 9000)
    assert bad.value.status == 400 and "8" in bad.value.message
    with pytest.raises(Unauthorized):
        TallyClient(relay.url, "tally_sk_" + "0" * 64).unread("alice")
    with pytest.raises(ValueError):
        tally.post_message(conversation=1, direct=["alice", "bob"], sender="alice", body="both")
    with pytest.raises(ValueError):
        tally.post_message(conversation=1, sender="alice", body="x", client_id="has a space")


def test_upsert_changes_one_person_and_nobody_else(relay: Relay) -> None:
    # The old guide's sync_staff always deactivated everyone missing: calling it for one person
    # deactivated the rest.
    tally = client(relay)
    tally.upsert_staff("dave", "Dave Jones")
    report = tally.upsert_staff("alice", "Alice M.")
    assert report["deactivated_missing"] == 0
    assert tally.unread("bob")["staff"] == "bob"
    tally.upsert_staff("dave", "Dave Jones", active=False)
    with pytest.raises(NotFound):
        tally.post_message(direct=["dave", "alice"], sender="dave", body="still here?")
    with pytest.raises(InvalidInput):
        tally.mirror_staff([], deactivate_missing=True)


def test_a_relay_that_is_down_is_retried_then_unreachable(relay: Relay) -> None:
    waits: list[float] = []
    tally = client(relay, retries=3, backoff=0.25, sleep=waits.append)
    relay.stop()
    with pytest.raises(Unreachable) as e:
        tally.post_notice(direct=["alice", "bob"], title="Down", client_id="down-1")
    assert e.value.retryable
    assert len(waits) == 3 and waits[0] <= 0.25 and waits[2] <= 1.0
    relay.start()
    assert tally.post_notice(direct=["alice", "bob"], title="Up", client_id="down-1")["message"]


def test_retries_come_back_up_and_store_once(relay: Relay) -> None:
    # The relay stops between two attempts of the same call: the retry lands once.
    calls: list[float] = []

    def restart_on_first_wait(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 1:
            relay.start()

    tally = client(relay, retries=2, sleep=restart_on_first_wait)
    first = tally.post_notice(direct=["alice", "bob"], title="Before", client_id="r-1")
    relay.stop()
    second = tally.post_notice(direct=["alice", "bob"], title="After", client_id="r-2")
    again = tally.post_notice(direct=["alice", "bob"], title="After", client_id="r-2")
    assert len(calls) == 1
    assert again["message"]["id"] == second["message"]["id"] != first["message"]["id"]
    assert tally.unread("alice")["total"]["unread"] == 2


def test_429_is_retried_after_retry_after() -> None:
    relay = Relay(args=("--service-per-sec", "0.5", "--service-burst", "1")).start()
    try:
        waits: list[float] = []
        tally = TallyClient(relay.url, relay.key, retries=2, sleep=lambda s: (waits.append(s), __import__("time").sleep(s)))
        tally.unread("alice")
        tally.unread("alice")
        assert len(waits) == 1 and 1.0 <= waits[0] <= 3.0, waits
    finally:
        relay.close()


def test_client_ids_are_stable_valid_and_refuse_none() -> None:
    assert client_id("lab-result", 9041) == "lab-result-9041"
    long = client_id("shift", "Nachtdienst Station 3 — Änderung " * 4)
    assert is_client_id(long) and long == client_id("shift", "Nachtdienst Station 3 — Änderung " * 4)
    assert long != client_id("shift", "Nachtdienst Station 3 — Änderung " * 4 + "!")
    with pytest.raises(ValueError, match="bulk_create"):
        client_id("shift", None)


def test_tokens_open_the_widget_api(relay: Relay) -> None:
    import json
    import urllib.request

    from tests.conftest import SECRET

    token = staff_token("alice", SECRET, ttl=60)
    request = urllib.request.Request(f"{relay.url}/api/staff", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as r:
        assert r.status == 200
        assert any(s["id"] == "bob" for s in json.loads(r.read()))
    with pytest.raises(ValueError):
        staff_token("Alice", SECRET)
    with pytest.raises(ValueError):
        staff_token("alice", "short")
