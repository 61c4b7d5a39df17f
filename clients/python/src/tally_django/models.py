from __future__ import annotations

from django.db import models
from django.utils import timezone


class OutboxItem(models.Model):
    """A service API call written in the host's own transaction, sent after it commits.

    A row exists until the relay has answered it with success (then it is deleted) or with a
    refusal that retrying cannot change (then ``failed_at`` is set and the row is kept to look
    at). Writes carry their ``client_id`` in ``body``, so sending a row twice stores it once.
    """

    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    body = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True, default="")
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["failed_at", "next_attempt_at"], name="tally_outbox_due")]
        verbose_name = "outbox item"

    def __str__(self) -> str:
        return f"{self.method} {self.path} #{self.pk}"


class WebhookDelivery(models.Model):
    """A webhook delivery handled already: its id (``webhook-id``), so a repeat is not handled
    twice. Rows older than the relay's retry horizon may be deleted (``tally_outbox --prune``
    does, after 14 days)."""

    id = models.CharField(primary_key=True, max_length=64)
    event_type = models.CharField(max_length=40)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event_type} {self.id}"
