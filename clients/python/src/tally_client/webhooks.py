"""Webhook verification, per Standard Webhooks (https://www.standardwebhooks.com).

Each delivery carries ``webhook-id`` (unique for ever, the same on every attempt of one
delivery), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` (``v1,BASE64``: the
HMAC-SHA256 of ``"{id}.{timestamp}.{body}"`` keyed with the secret after ``whsec_``, read as
base64). :meth:`WebhookVerifier.verify` checks the signature in constant time, refuses a
timestamp more than ``tolerance`` seconds away (a replayed delivery), and returns the event.

Deliveries are at least once: deduplicate on :attr:`WebhookEvent.id`. With Django,
``tally_django``'s webhook view does both; elsewhere::

    event = verifier.verify(request_body, request_headers)
    if seen_before(event.id):
        return 200
    handle(event)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: How far a delivery's timestamp may be from now, in seconds, by default.
TOLERANCE = 300


class WebhookVerificationError(Exception):
    """The delivery is not from the relay, was changed, or is too old or too new: answer 400."""


@dataclass(frozen=True)
class WebhookEvent:
    """One verified delivery."""

    #: The delivery's id (``webhook-id`` = the body's ``id``): the key to deduplicate on.
    id: str
    #: ``message_created``, ``message_deleted`` or ``unread_reminder``.
    type: str
    #: When the event happened, in milliseconds since the Unix epoch.
    created_at: int
    #: The event's own fields (``docs/integration.md`` shows each).
    data: dict[str, Any] = field(default_factory=dict)


def _key(secret: str) -> bytes:
    encoded = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("a webhook secret is `whsec_` followed by base64, as `webhook add` printed it") from e


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        # Plain dicts from other frameworks may keep the sender's case.
        lowered = {k.lower(): v for k, v in headers.items()}
        value = lowered.get(name)
    if not value:
        raise WebhookVerificationError(f"missing header {name}")
    return value


class WebhookVerifier:
    """Verifies deliveries signed with one webhook's secret (``whsec_…``)."""

    def __init__(self, secret: str, *, tolerance: int = TOLERANCE) -> None:
        self._key = _key(secret)
        self.tolerance = tolerance

    def sign(self, delivery_id: str, timestamp: int, body: bytes) -> str:
        """The ``v1,BASE64`` signature of a delivery (for tests of your own receiver)."""
        signed = f"{delivery_id}.{timestamp}.".encode() + body
        mac = hmac.new(self._key, signed, hashlib.sha256).digest()
        return "v1," + base64.b64encode(mac).decode("ascii")

    def verify(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> WebhookEvent:
        """The event, if ``body`` and ``headers`` are a genuine, recent delivery."""
        delivery_id = _header(headers, "webhook-id")
        stamp = _header(headers, "webhook-timestamp")
        signatures = _header(headers, "webhook-signature")
        try:
            timestamp = int(stamp)
        except ValueError as e:
            raise WebhookVerificationError("webhook-timestamp is not a number") from e
        current = time.time() if now is None else now
        if abs(current - timestamp) > self.tolerance:
            raise WebhookVerificationError("the delivery's timestamp is too far from now (a replay?)")
        expected = self.sign(delivery_id, timestamp, body).encode("ascii")
        if not any(
            hmac.compare_digest(expected, candidate.encode("ascii", "replace"))
            for candidate in signatures.split()
        ):
            raise WebhookVerificationError("no signature matches")
        try:
            event = json.loads(body)
        except ValueError as e:
            raise WebhookVerificationError("the body is not JSON") from e
        if not isinstance(event, dict) or event.get("id") != delivery_id:
            raise WebhookVerificationError("the body's id is not the delivery's")
        return WebhookEvent(
            id=delivery_id,
            type=str(event.get("type", "")),
            created_at=int(event.get("created_at", 0)),
            data=dict(event.get("data") or {}),
        )
