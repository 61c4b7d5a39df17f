"""The Django app against the real relay: tokens, the widget tag, the outbox (through the relay
stopping and being killed), webhooks, and the management commands."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import threading
import time
import urllib.request

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import transaction
from django.test import Client

from tests.conftest import SECRET, Relay
from tally_client import TallyClient, WebhookVerifier
from tally_django import outbox
from tally_django.models import OutboxItem, WebhookDelivery
from tally_django.signals import webhook_received
from tests.labs.models import LabResult

pytestmark = pytest.mark.django_db(transaction=True)


def people() -> tuple[User, User]:
    alice = User.objects.create_user("alice", first_name="Alice", last_name="Martin", password="pw")
    bob = User.objects.create_user("bob", first_name="Bob", last_name="Chen", password="pw")
    return alice, bob


def unread(relay: Relay, staff: str) -> int:
    return TallyClient(relay.url, relay.key).unread(staff)["total"]["unread"]


def test_the_token_view_signs_the_user_in_and_never_redirects(tally_settings, relay: Relay) -> None:
    alice, _ = people()
    web = Client()
    anonymous = web.get("/tally/token")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthorized"
    web.force_login(alice)
    answer = web.get("/tally/token")
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/plain")
    assert "no-store" in answer["Cache-Control"] or "no-cache" in answer["Cache-Control"]
    token = answer.content.decode()
    request = urllib.request.Request(f"{relay.url}/api/staff", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as r:
        assert r.status == 200
    assert web.post("/tally/token").status_code == 405


def test_the_widget_tag_mounts_the_loader_for_signed_in_users(tally_settings, relay: Relay) -> None:
    alice, _ = people()
    tally_settings.TALLY_PUBLIC_URL = "https://app.example.com/chat/"
    web = Client()
    web.force_login(alice)
    page = web.get("/").content.decode()
    assert '<script type="module" src="https://app.example.com/chat/tally-loader.js"></script>' in page
    assert 'data-tally-token-url="/tally/token"' in page
    assert 'data-tally-relay-url="https://app.example.com/chat"' in page
    assert "tally.q=tally.q||[]" in page


def test_saving_users_mirrors_them_and_a_model_save_posts_after_commit(tally_settings, relay: Relay) -> None:
    alice, bob = people()  # alice and bob exist in the relay already: renamed
    dora = User.objects.create_user("dora", first_name="Dora", last_name="Wu")
    assert outbox.pending() == 0, "sent on commit"
    before = unread(relay, "bob")
    with transaction.atomic():
        LabResult.objects.create(room="12", ordered_by=alice, nurse=bob)
        assert unread(relay, "bob") == before, "nothing is sent before the commit"
    assert unread(relay, "bob") == before + 1
    assert outbox.pending() == 0
    # A rolled-back save announces nothing.
    with pytest.raises(RuntimeError), transaction.atomic():
        LabResult.objects.create(room="13", ordered_by=alice, nurse=bob)
        raise RuntimeError("the host's own failure")
    assert unread(relay, "bob") == before + 1
    assert OutboxItem.objects.count() == 0
    # The new user is staff in the relay, under their username.
    LabResult.objects.create(room="14", ordered_by=alice, nurse=dora)
    assert unread(relay, "dora") == 1


def test_the_outbox_delivers_every_post_exactly_once_through_a_relay_down_and_killed(tally_settings, relay: Relay) -> None:
    alice, bob = people()
    # Down: each save commits; its post waits in the outbox.
    relay.stop()
    for i in range(20):
        LabResult.objects.create(room=f"A{i}", ordered_by=alice, nurse=bob)
    assert outbox.pending() == 20 + 0
    relay.start()
    # Up, then killed -9 and restarted twice while the worker drains 20 more.
    tally_settings.TALLY_SEND_ON_COMMIT = False
    for i in range(20):
        LabResult.objects.create(room=f"B{i}", ordered_by=alice, nurse=bob)

    def chaos() -> None:
        for _ in range(2):
            time.sleep(0.3)
            relay.stop(signal.SIGKILL)
            time.sleep(0.5)
            relay.start()

    killer = threading.Thread(target=chaos)
    killer.start()
    deadline = time.monotonic() + 120
    client = outbox.client(timeout=2)
    while (outbox.pending() or killer.is_alive()) and time.monotonic() < deadline:
        outbox.drain(client, limit=3)
        time.sleep(0.05)
    killer.join()
    assert outbox.pending() == 0
    assert OutboxItem.objects.filter(failed_at__isnull=False).count() == 0
    # Every post once: two staff mirrors, then 40 results, in bob's direct conversation.
    assert unread(relay, "bob") == 40


@pytest.fixture
def webhook_secret(tally_settings, relay: Relay, live_server):  # type: ignore[no-untyped-def]
    url = f"{live_server.url}/tally/webhook"
    out = relay.cli("webhook", "add", url, "--events", "message_created,message_deleted,unread_reminder")
    secret = next(word for word in out.split() if word.startswith("whsec_"))
    tally_settings.TALLY_WEBHOOK_SECRET = secret
    time.sleep(1.2)  # a running relay picks webhooks up within a second
    return secret


def test_webhooks_arrive_verified_and_once(tally_settings, relay: Relay, webhook_secret: str) -> None:
    alice, bob = people()
    events = []

    def collect(sender, event, **kwargs):  # type: ignore[no-untyped-def]
        events.append(event)

    webhook_received.connect(collect)
    try:
        for i in range(3):
            LabResult.objects.create(room=f"C{i}", ordered_by=alice, nurse=bob)
        deadline = time.monotonic() + 30
        while len(events) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(e.data["message"]["body"] for e in events) == [f"Lab results for C{i} are in" for i in range(3)]
        assert {e.type for e in events} == {"message_created"}
        assert WebhookDelivery.objects.count() == 3
    finally:
        webhook_received.disconnect(collect)


def test_the_webhook_view_refuses_forgeries_and_replays_and_handles_repeats_once(tally_settings, relay: Relay, settings) -> None:
    secret = "whsec_" + __import__("base64").b64encode(b"k" * 24).decode()
    settings.TALLY_WEBHOOK_SECRET = secret
    verifier = WebhookVerifier(secret)
    body = json.dumps({"id": "d1", "type": "message_created", "created_at": 1, "data": {"offset": 1}}).encode()
    now = int(time.time())

    def deliver(payload: bytes, stamp: int, signature: str | None = None, delivery: str = "d1"):  # type: ignore[no-untyped-def]
        return Client().post(
            "/tally/webhook",
            data=payload,
            content_type="application/json",
            headers={
                "webhook-id": delivery,
                "webhook-timestamp": str(stamp),
                "webhook-signature": signature or verifier.sign(delivery, stamp, payload),
            },
        )

    seen = []
    handler = lambda sender, event, **kw: seen.append(event.id)  # noqa: E731
    webhook_received.connect(handler)
    try:
        assert deliver(body, now).status_code == 204
        assert deliver(body, now).status_code == 200, "a repeat is acknowledged, not handled"
        assert seen == ["d1"]
        assert deliver(body.replace(b"1}", b"2}"), now, verifier.sign("d1", now, body)).status_code == 400
        assert deliver(body, now - 3600).status_code == 400, "too old: a replay"
        other = WebhookVerifier("whsec_" + __import__("base64").b64encode(b"x" * 24).decode())
        assert deliver(body, now, other.sign("d1", now, body)).status_code == 400
    finally:
        webhook_received.disconnect(handler)

    # A receiver that fails leaves the delivery unrecorded: the relay's retry is handled.
    def failing(sender, event, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the email service is down")

    webhook_received.connect(failing)
    body2 = json.dumps({"id": "d2", "type": "unread_reminder", "created_at": 1, "data": {}}).encode()
    try:
        with pytest.raises(RuntimeError):
            deliver(body2, now, delivery="d2")
    finally:
        webhook_received.disconnect(failing)
    assert not WebhookDelivery.objects.filter(id="d2").exists()
    assert deliver(body2, now, delivery="d2").status_code == 204


def test_sync_staff_deactivates_only_when_asked(tally_settings, relay: Relay) -> None:
    people()  # alice and bob; carol is in the relay only
    out = io.StringIO()
    call_command("tally_sync_staff", stdout=out)
    assert "0 deactivated" in out.getvalue()
    tally = TallyClient(relay.url, relay.key)
    assert tally.unread("carol")["staff"] == "carol"
    call_command("tally_sync_staff", "--deactivate-missing", stdout=out)
    assert "1 deactivated" in out.getvalue()
    with pytest.raises(Exception) as gone:
        tally.post_message(direct=["carol", "alice"], sender="carol", body="hi")
    assert getattr(gone.value, "status", None) == 404
    # One person, explicitly: nobody else changes.
    User.objects.filter(username="bob").update(first_name="Robert")
    call_command("tally_upsert_staff", "bob", stdout=out)
    assert "bob (Robert Chen, active)" in out.getvalue()
    assert tally.unread("alice")["staff"] == "alice"


def records():  # type: ignore[no-untyped-def]
    import datetime as dt

    from tally_django import export

    t = dt.datetime(2025, 1, 2, 8, 0, tzinfo=dt.timezone.utc)
    yield export.staff("alice", "Alice Martin")
    yield export.staff("bob", "Bob Chen")
    yield export.conversation(1, ["alice", "bob"], created_at=t)
    yield export.message(10, 1, "alice", "Is room 4 ready?", created_at=t)
    yield export.message(11, 1, "bob", "Yes", created_at=t + dt.timedelta(minutes=1), reply_to=10)
    yield export.read(1, "alice", 11)


def test_the_export_command_writes_what_the_importer_takes(settings, tmp_path) -> None:
    from tests.conftest import relay_binary

    settings.TALLY_EXPORT = "tests.test_django.records"
    out = tmp_path / "export.jsonl"
    stdout = io.StringIO()
    call_command("tally_export", str(out), stdout=stdout)
    assert "2 staff, 1 conversation, 2 message, 1 read" in stdout.getvalue()
    data = tmp_path / "data"
    checked = subprocess.run(
        [str(relay_binary()), "--data", str(data), "import", str(out), "--dry-run"],
        capture_output=True,
        text=True,
        env={"TALLY_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
    )
    assert checked.returncode == 0, checked.stderr + checked.stdout


def test_export_refuses_naive_times_and_out_of_order_records() -> None:
    import datetime as dt

    from tally_django import export

    with pytest.raises(ValueError, match="time zone"):
        export.message(1, 1, "alice", "hi", created_at=dt.datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="before their staff"):
        export.write([export.conversation(1, ["alice", "bob"], created_at="2025-01-01T00:00:00Z")], io.StringIO())
