"""Tally for the work app's backend: the service API client, webhook verification, staff
tokens and client ids. ``tally_django`` (in the same distribution) builds a Django app on them.

No dependencies beyond the standard library.
"""

from .client import Changed, Counts, MirrorReport, Posted, StaffEntry, TallyClient, Unread, message_payload, notice_payload
from .errors import (
    ERRORS,
    Internal,
    InvalidInput,
    NotAllowed,
    NotAuthor,
    NotFound,
    NotParticipant,
    QuotaExceeded,
    RateLimited,
    TallyError,
    Timeout,
    TooLarge,
    Unauthorized,
    Unavailable,
    Unreachable,
)
from .ids import client_id, is_client_id, new_client_id
from .tokens import staff_token
from .webhooks import WebhookEvent, WebhookVerificationError, WebhookVerifier

__version__ = "0.1.0"

__all__ = [
    "ERRORS",
    "Changed",
    "Counts",
    "Internal",
    "InvalidInput",
    "MirrorReport",
    "NotAllowed",
    "NotAuthor",
    "NotFound",
    "NotParticipant",
    "Posted",
    "QuotaExceeded",
    "RateLimited",
    "StaffEntry",
    "TallyClient",
    "TallyError",
    "Timeout",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "Unread",
    "Unreachable",
    "WebhookEvent",
    "WebhookVerificationError",
    "WebhookVerifier",
    "client_id",
    "is_client_id",
    "message_payload",
    "notice_payload",
    "new_client_id",
    "staff_token",
]
