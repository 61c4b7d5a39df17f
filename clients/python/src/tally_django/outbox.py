"""A transactional outbox for the service API.

Call these where your code used to push a notification: they write a row **in the current
transaction** (so it exists exactly when your own rows do) and send it once that transaction
commits. If the relay is down, slow or refuses for a while, the row stays, and
``manage.py tally_outbox`` sends it later; each row carries a ``client_id``, so whatever is sent
twice (a lost answer, two workers) is stored once::

    from tally_client import client_id
    from tally_django import outbox

    with transaction.atomic():
        result = LabResult.objects.create(...)
        outbox.post_message(
            direct=[result.ordered_by.staff_id, result.nurse.staff_id],
            sender=result.ordered_by.staff_id,
            body=f"Lab results for {result.room} are in",
            client_id=client_id("lab-result", result.pk),
        )

A rolled-back transaction takes its rows with it: nothing is announced that did not happen.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from tally_client import TallyClient, TallyError, message_payload, notice_payload

from . import conf
from .models import OutboxItem

log = logging.getLogger("tally.outbox")

#: Longest wait between attempts of one row.
MAX_BACKOFF = 300.0


def client(*, timeout: float | None = None, retries: int = 0) -> TallyClient:
    """A service API client from the settings."""
    return TallyClient(
        conf.required("TALLY_URL"),
        conf.required("TALLY_SERVICE_KEY"),
        timeout=conf.get("TALLY_TIMEOUT") if timeout is None else timeout,
        retries=retries,
    )


def enqueue(method: str, path: str, body: Any, *, using: str = DEFAULT_DB_ALIAS) -> OutboxItem:
    """Any service API call, written now and sent after the transaction on ``using`` commits
    (at once when there is no transaction). A write's ``body`` must carry its ``client_id``."""
    item = OutboxItem.objects.using(using).create(method=method, path=path, body=body)
    if conf.get("TALLY_SEND_ON_COMMIT"):
        pk = item.pk
        transaction.on_commit(lambda: _send_after_commit(pk, using), using=using)
    return item


def post_message(
    *,
    sender: str,
    body: str = "",
    conversation: int | None = None,
    direct: Sequence[str] | None = None,
    attachments: Sequence[str] = (),
    reply_to: int | None = None,
    client_id: str | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> OutboxItem:
    """:meth:`TallyClient.post_message`, through the outbox. Give a ``client_id`` derived from
    your row when the same code may run twice for it (a retried job)."""
    payload = message_payload(
        sender=sender,
        body=body,
        conversation=conversation,
        direct=direct,
        attachments=attachments,
        reply_to=reply_to,
        client_id=client_id,
    )
    return enqueue("POST", "/messages", payload, using=using)


def post_notice(
    *,
    title: str,
    text: str = "",
    conversation: int | None = None,
    direct: Sequence[str] | None = None,
    attachments: Sequence[str] = (),
    client_id: str | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> OutboxItem:
    """:meth:`TallyClient.post_notice`, through the outbox."""
    payload = notice_payload(
        title=title,
        text=text,
        conversation=conversation,
        direct=direct,
        attachments=attachments,
        client_id=client_id,
    )
    return enqueue("POST", "/messages", payload, using=using)


def upsert_staff(staff_id: str, name: str, *, active: bool = True, using: str = DEFAULT_DB_ALIAS) -> OutboxItem:
    """Adds or updates one person in the relay's staff, through the outbox (nobody else
    changes)."""
    return enqueue("PUT", "/staff", [{"id": staff_id, "name": name, "active": active}], using=using)


def _send_after_commit(pk: int, using: str) -> None:
    # One quick attempt; the worker does the rest. Never raises into the host's request.
    try:
        item = OutboxItem.objects.using(using).filter(pk=pk, failed_at__isnull=True).first()
        if item is not None:
            send(item, client(timeout=conf.get("TALLY_ON_COMMIT_TIMEOUT")), using=using)
    except Exception:  # noqa: BLE001 - the host's commit has happened; the worker retries
        log.exception("sending outbox item %s after commit failed; the worker will retry", pk)


@dataclass
class Drained:
    """What one pass of :func:`drain` did."""

    sent: int = 0
    failed: int = 0
    deferred: int = 0

    @property
    def stalled(self) -> bool:
        """Whether the pass stopped on a row to try again later (the relay down, say)."""
        return self.deferred > 0


def send(item: OutboxItem, tally: TallyClient, *, using: str = DEFAULT_DB_ALIAS) -> str:
    """Sends one row: ``"sent"`` (deleted), ``"failed"`` (a refusal retrying cannot change: kept
    with ``failed_at``) or ``"deferred"`` (to try again after a backoff)."""
    rows = OutboxItem.objects.using(using).filter(pk=item.pk)
    now = timezone.now()
    max_age = dt.timedelta(seconds=conf.get("TALLY_OUTBOX_MAX_AGE"))
    if now - item.created_at > max_age:
        # The relay forgets client ids after 7 days: sent now, it could be stored twice.
        rows.update(failed_at=now, last_error="unsent for too long to be sent safely")
        log.error("outbox item %s given up: unsent since %s", item.pk, item.created_at)
        return "failed"
    try:
        tally.call(item.method, item.path, json_body=item.body)
    except TallyError as e:
        if e.retryable:
            wait = e.retry_after if e.retry_after is not None else min(MAX_BACKOFF, 2.0**item.attempts)
            rows.update(
                attempts=item.attempts + 1,
                next_attempt_at=now + dt.timedelta(seconds=wait),
                last_error=str(e)[:2000],
            )
            return "deferred"
        rows.update(attempts=item.attempts + 1, failed_at=now, last_error=str(e)[:2000])
        log.error("outbox item %s refused by the relay: %s", item.pk, e)
        return "failed"
    rows.delete()
    return "sent"


def drain(tally: TallyClient | None = None, *, limit: int = 500, using: str = DEFAULT_DB_ALIAS) -> Drained:
    """Sends the rows that are due, oldest first, and stops at the first one deferred (a
    relay that is down refuses the rest alike, and order is kept)."""
    tally = tally or client()
    done = Drained()
    due = (
        OutboxItem.objects.using(using)
        .filter(failed_at__isnull=True, next_attempt_at__lte=timezone.now())
        .order_by("id")[:limit]
    )
    for item in list(due):
        outcome = send(item, tally, using=using)
        if outcome == "sent":
            done.sent += 1
        elif outcome == "failed":
            done.failed += 1
        else:
            done.deferred += 1
            break
    return done


def pending(*, using: str = DEFAULT_DB_ALIAS) -> int:
    """Rows not sent yet (failed ones excluded)."""
    return OutboxItem.objects.using(using).filter(failed_at__isnull=True).count()
