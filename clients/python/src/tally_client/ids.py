"""Client ids: what makes a retried write land once.

A ``client_id`` is 1 to 64 of ``A-Z a-z 0-9 . _ -``. Its scope is its author (the ``sender``, or
the service itself for notices) and the kind of write (a message, a group): ``lab-result-9041``
sent by alice and a notice with the same id are two writes. The relay remembers an id for 7 days
(and the service's last 200,000 notices, each person's last 1,000 messages): a retry within that
time returns the first write's answer and stores nothing.

Derive ids from your own rows, never from something set only after saving::

    client_id("lab-result", result.pk)      # "lab-result-9041"
    client_id("shift", shift.uuid)          # a field set before bulk_create
"""

from __future__ import annotations

import hashlib
import re
import uuid

_ALPHABET = re.compile(r"[A-Za-z0-9._-]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_LEN = 64


def client_id(*parts: object) -> str:
    """A client id made of ``parts`` joined by ``-``, the same for the same parts every time.

    Parts outside the alphabet are replaced, and an id that would be longer than 64 characters
    keeps a readable start and ends with a hash of the whole, so different parts never meet.
    A part that is ``None`` (a primary key before saving, or after ``bulk_create`` on a
    database that does not return keys) is refused: every row would get the same id.
    """
    if not parts:
        raise ValueError("a client id needs at least one part")
    for i, part in enumerate(parts):
        if part is None:
            raise ValueError(
                f"client id part {i} is None: use a value that exists before the row is saved "
                "(bulk_create leaves pk None on some databases)"
            )
    text = "-".join(str(p) for p in parts)
    if text and len(text) <= MAX_LEN and _ALPHABET.fullmatch(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    readable = _UNSAFE.sub("_", text).strip("_")[: MAX_LEN - len(digest) - 1]
    return f"{readable}-{digest}" if readable else digest


def new_client_id() -> str:
    """A random client id, for a write with nothing of its own to derive one from (keep it with
    the write if it may be retried)."""
    return uuid.uuid4().hex


def is_client_id(text: str) -> bool:
    """Whether ``text`` is a valid client id as it is."""
    return 0 < len(text) <= MAX_LEN and _ALPHABET.fullmatch(text) is not None
