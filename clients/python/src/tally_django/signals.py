"""Signals the Tally app sends."""

from django.dispatch import Signal

#: A verified webhook delivery seen for the first time: ``event`` is a
#: :class:`tally_client.WebhookEvent` (``event.type``, ``event.data``). Receivers run inside the
#: transaction that records the delivery: if one raises, the view answers 500, nothing is
#: recorded, and the relay delivers it again later.
webhook_received = Signal()
