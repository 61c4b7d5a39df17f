"""Refusals from the relay, one exception class per stable error code.

Every refusal of the relay is ``{"code": ..., "message": ...}`` with an HTTP status; the code is
stable (``docs/protocol.md``), the message is for people. ``error_from`` turns an answer into the
class of its code, so callers catch what they can act on::

    try:
        client.post_message(conversation=12, sender="alice", body="hi")
    except NotParticipant:
        ...  # alice left that group
"""

from __future__ import annotations

import json
from typing import ClassVar


class TallyError(Exception):
    """A call the relay refused, or could not be made at all (:class:`Unreachable`)."""

    code: ClassVar[str] = "error"

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status = status
        self.wire_code = code
        self.message = message
        #: Seconds to wait before trying again, when the relay said (a 429's ``Retry-After``).
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether the same call may succeed later: no answer, 408, 429 or a 5xx. Calls that
        write carry a ``client_id``, so retrying one never stores it twice."""
        return self.status == 0 or self.status in (408, 429) or self.status >= 500


class Unreachable(TallyError):
    """No answer: the relay is down, unreachable, or did not answer within the timeout. The
    write may or may not have been stored; retrying it with the same ``client_id`` is safe."""

    code = "unreachable"


class InvalidInput(TallyError):
    """A field breaks a rule (length, count, shape); the message says which. Fix the call."""

    code = "invalid_input"


class TooLarge(TallyError):
    """A body over its limit (an attachment over 10 MiB)."""

    code = "too_large"


class Unauthorized(TallyError):
    """The service key is missing, unknown or revoked."""

    code = "unauthorized"


class NotFound(TallyError):
    """No such conversation, message, staff member, attachment or route."""

    code = "not_found"


class NotParticipant(TallyError):
    """The sender is not a participant of that conversation."""

    code = "not_participant"


class NotAuthor(TallyError):
    """Only the author may edit or delete a message."""

    code = "not_author"


class NotAllowed(TallyError):
    """That cannot be done to this kind of thing (renaming a direct conversation), or the method
    is not one this route takes."""

    code = "not_allowed"


class RateLimited(TallyError):
    """Too many calls; ``retry_after`` says when to come back."""

    code = "rate_limited"


class QuotaExceeded(TallyError):
    """A budget over a longer time (the upload bytes of 24 hours) is spent."""

    code = "quota_exceeded"


class Timeout(TallyError):
    """The request's body arrived slower than the relay accepts; nothing was stored."""

    code = "timeout"


class Internal(TallyError):
    """The relay failed; nothing was stored."""

    code = "internal"


class Unavailable(TallyError):
    """The cluster's database cannot be reached: the write may or may not be stored, so send it
    again with the same ``client_id``."""

    code = "unavailable"


ERRORS: dict[str, type[TallyError]] = {
    cls.code: cls
    for cls in (
        InvalidInput,
        TooLarge,
        Unauthorized,
        NotFound,
        NotParticipant,
        NotAuthor,
        NotAllowed,
        RateLimited,
        QuotaExceeded,
        Timeout,
        Internal,
        Unavailable,
    )
}


def error_from(status: int, body: bytes, retry_after: str | None = None) -> TallyError:
    """The exception for a refusal: its code's class, or :class:`TallyError` for a code this
    version does not know (or an answer that is not the relay's, such as a proxy's 502 page)."""
    code, message = f"http_{status}", body[:200].decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("code"), str):
            code, message = parsed["code"], str(parsed.get("message", ""))
    except ValueError:
        pass
    wait: float | None = None
    if retry_after is not None:
        try:
            wait = max(0.0, float(retry_after))
        except ValueError:
            wait = None
    cls = ERRORS.get(code, TallyError)
    return cls(status, code, message or f"HTTP {status}", wait)
