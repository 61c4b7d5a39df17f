"""Your old chat's history in tally-relay's import format, for ``manage.py tally_export``.

Point ``TALLY_EXPORT`` at a function that yields records, in this order: staff before the
conversations that name them, a conversation before its messages, reads anywhere after their
message. Build them with :func:`staff`, :func:`conversation`, :func:`message` and :func:`read`;
ids may be any value (they are written as text), times must be aware datetimes::

    from tally_django import export

    def records():
        for s in Staff.objects.order_by("pk").iterator():
            yield export.staff(s.staff_id, s.full_name, active=s.is_active)
        for c in ChatConversation.objects.prefetch_related("participants").order_by("pk").iterator(chunk_size=500):
            yield export.conversation(c.pk, [p.staff_id for p in c.participants.all()],
                                      created_at=c.created_at, title=None if c.is_direct else c.title)
        ...
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, TextIO


def _time(value: dt.datetime | str) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value!r} has no time zone: use aware datetimes (USE_TZ = True)")
    return value.isoformat()


def staff(staff_id: str, name: str, *, active: bool = True) -> dict[str, Any]:
    """A staff member."""
    return {"kind": "staff", "id": staff_id, "name": name, "active": active}


def conversation(
    conversation_id: object,
    participants: Sequence[str],
    *,
    created_at: dt.datetime | str,
    title: str | None = None,
) -> dict[str, Any]:
    """A conversation: a group when it has a ``title``, else direct (exactly two people)."""
    record: dict[str, Any] = {
        "kind": "conversation",
        "id": str(conversation_id),
        "type": "direct" if title is None else "group",
        "participants": list(participants),
        "created_at": _time(created_at),
    }
    if title is not None:
        record["title"] = title
    return record


def message(
    message_id: object,
    conversation_id: object,
    sender: str,
    body: str,
    *,
    created_at: dt.datetime | str,
    reply_to: object | None = None,
    deleted: bool = False,
    attachments: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A message. ``attachments`` are ``{"file": PATH, "name": NAME}``: ``PATH`` relative to the
    directory the files are copied to (``tally-relay import --files DIR``; by default the
    export's own directory), ``NAME`` optional (the file's name). A message needs a body or
    attachments, unless it is deleted."""
    record: dict[str, Any] = {
        "kind": "message",
        "id": str(message_id),
        "conversation": str(conversation_id),
        "sender": sender,
        "body": body,
        "created_at": _time(created_at),
    }
    if reply_to is not None:
        record["reply_to"] = str(reply_to)
    if deleted:
        record["deleted"] = True
    if attachments:
        record["attachments"] = [dict(a) for a in attachments]
    return record


def read(conversation_id: object, staff_id: str, message_id: object) -> dict[str, Any]:
    """``staff_id`` has read that message (a row of the old ``read_by``)."""
    return {"kind": "read", "conversation": str(conversation_id), "staff": staff_id, "message": str(message_id)}


def write(records: Iterable[dict[str, Any]], out: TextIO) -> Counter[str]:
    """Writes ``records`` as JSON lines, checking the order the importer needs; returns how
    many of each kind. A record out of order raises ``ValueError`` saying which."""
    staff_ids: set[str] = set()
    conversations: set[str] = set()
    counts: Counter[str] = Counter()
    for n, record in enumerate(records, start=1):
        kind = record.get("kind")
        if kind == "staff":
            staff_ids.add(record["id"])
        elif kind == "conversation":
            missing = [p for p in record["participants"] if p not in staff_ids]
            if missing:
                raise ValueError(f"record {n}: conversation {record['id']} names {missing} before their staff records")
            conversations.add(record["id"])
        elif kind in ("message", "read"):
            if record["conversation"] not in conversations:
                raise ValueError(f"record {n}: a {kind} of conversation {record['conversation']} before it")
        else:
            raise ValueError(f"record {n}: unknown kind {kind!r}")
        counts[kind] += 1
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    return counts
