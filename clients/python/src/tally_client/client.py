"""The service API client: what the work app's backend calls (``/api/v1/service/…``).

Every call sends the service key, times out, and retries what may succeed later (no answer, 408,
429 honouring ``Retry-After``, 5xx) with exponential backoff and jitter. Writes always carry a
``client_id`` (one is made when none is given), so a retry never stores anything twice. A refusal
raises the exception of its code (:mod:`tally_client.errors`)::

    tally = TallyClient("http://127.0.0.1:8080", "tally_sk_…")
    tally.post_notice(conversation=12, title="Shift change", text="Nights start at 22:00",
                      client_id=client_id("shift-change", shift.uuid))
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypedDict, cast

from .errors import TallyError, Unreachable, error_from
from .ids import is_client_id, new_client_id


class StaffEntry(TypedDict, total=False):
    """One person as the work app has them: ``id`` and ``name`` required, ``active`` (default
    true)."""

    id: str
    name: str
    active: bool


class MirrorReport(TypedDict):
    """What a staff mirror changed."""

    #: New staff.
    added: int
    #: Existing staff renamed, reactivated or deactivated.
    changed: int
    #: Staff not in the list, deactivated (``deactivate_missing``).
    deactivated_missing: int


class Counts(TypedDict):
    unread: int
    mentions: int


class ThreadUnread(TypedDict):
    """A thread someone follows: its root's seq and their counts in it."""

    root: int
    unread: int
    mentions: int
    last_read: int
    head: int


class ConversationUnread(TypedDict):
    id: int
    kind: str
    title: str | None
    unread: int
    mentions: int
    muted: bool
    last_read: int
    head: int
    #: The threads followed in it (the total adds them when the conversation is not muted).
    threads: list[ThreadUnread]


class Unread(TypedDict):
    """Someone's unread counts, in total and per conversation."""

    staff: str
    total: Counts
    conversations: list[ConversationUnread]


class Changed(TypedDict):
    """A conversation made or changed: the log offset and the conversation as it is now
    (``id``, ``kind``, ``title``, ``participants``, ``created_by``, ``created_at``)."""

    offset: int
    conversation: dict[str, Any]


class Posted(TypedDict):
    """A stored message: the log offset that stored it and the message as staff see it."""

    offset: int
    message: dict[str, Any]


DEFAULT_TIMEOUT = 10.0


class TallyClient:
    """A client of one relay's service API, with one service key.

    ``retries`` is how many times a call that may succeed later is tried again (0: once only);
    waits grow from ``backoff`` seconds, doubling, up to ``max_backoff``, with jitter; a 429's
    ``Retry-After`` is honoured as given.
    """

    def __init__(
        self,
        url: str,
        service_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the relay's URL starts with http:// or https://, not {url!r}")
        if not service_key:
            raise ValueError("a service key is required (tally-relay service-key create NAME)")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._key = service_key
        self._sleep = sleep

    # -- staff -----------------------------------------------------------------------------

    def mirror_staff(self, people: Iterable[StaffEntry], *, deactivate_missing: bool = False) -> MirrorReport:
        """Adds and updates these people; with ``deactivate_missing``, deactivates everyone the
        relay has who is not in the list (pass the whole staff table, never one person)."""
        entries = [dict(p) for p in people]
        params = {"deactivate_missing": "true"} if deactivate_missing else None
        return cast(MirrorReport, self.call("PUT", "/staff", json_body=entries, params=params))

    def upsert_staff(self, staff_id: str, name: str, *, active: bool = True) -> MirrorReport:
        """Adds or updates one person (``active=False`` deactivates them); nobody else changes."""
        return self.mirror_staff([{"id": staff_id, "name": name, "active": active}])

    def unread(self, staff_id: str) -> Unread:
        """Someone's unread counts, in total and per conversation."""
        return cast(Unread, self.call("GET", f"/staff/{_segment(staff_id)}/unread"))

    # -- messages --------------------------------------------------------------------------

    def post_message(
        self,
        *,
        sender: str,
        body: str = "",
        conversation: int | None = None,
        direct: Sequence[str] | None = None,
        attachments: Sequence[str] = (),
        reply_to: int | None = None,
        thread: int | None = None,
        client_id: str | None = None,
    ) -> Posted:
        """A message by ``sender`` into ``conversation``, or into the direct conversation of the
        two people in ``direct`` (opened if new); with ``thread`` (a root's seq in
        ``conversation``), a reply in that thread. A retry with the same ``client_id`` returns
        the same message and stores nothing."""
        payload = message_payload(
            sender=sender,
            body=body,
            conversation=conversation,
            direct=direct,
            attachments=attachments,
            reply_to=reply_to,
            thread=thread,
            client_id=client_id,
        )
        return cast(Posted, self.call("POST", "/messages", json_body=payload))

    def post_notice(
        self,
        *,
        title: str,
        text: str = "",
        conversation: int | None = None,
        direct: Sequence[str] | None = None,
        attachments: Sequence[str] = (),
        client_id: str | None = None,
    ) -> Posted:
        """A system notice (from the work app itself, not a person) into a conversation."""
        payload = notice_payload(
            title=title,
            text=text,
            conversation=conversation,
            direct=direct,
            attachments=attachments,
            client_id=client_id,
        )
        return cast(Posted, self.call("POST", "/messages", json_body=payload))

    # -- conversations ---------------------------------------------------------------------

    def create_group(self, title: str, participants: Sequence[str], *, client_id: str | None = None) -> Changed:
        """A group with these participants (the service is not in it); a retry with the same
        ``client_id`` returns the same group."""
        payload = {"title": title, "participants": list(participants), "client_id": _checked_client_id(client_id)}
        return cast(Changed, self.call("POST", "/conversations", json_body=payload))

    def add_participants(self, conversation: int, staff: Sequence[str]) -> Changed:
        """Adds people to a group (at most 64 per call)."""
        path = f"/conversations/{int(conversation)}/participants"
        return cast(Changed, self.call("POST", path, json_body={"staff": list(staff)}))

    def remove_participant(self, conversation: int, staff_id: str) -> Changed:
        """Removes someone from a group."""
        path = f"/conversations/{int(conversation)}/participants/{_segment(staff_id)}"
        return cast(Changed, self.call("DELETE", path))

    # -- files -----------------------------------------------------------------------------

    def upload_attachment(self, data: bytes, *, name: str | None = None, uploader: str | None = None) -> dict[str, Any]:
        """Uploads a file (at most 10 MiB) for a message or notice to carry; returns its record,
        whose ``id`` goes into ``attachments``. The same bytes are the same attachment."""
        params = {k: v for k, v in (("name", name), ("uploader", uploader)) if v is not None}
        return cast(dict[str, Any], self.call("POST", "/attachments", raw=data, params=params))

    # -- plumbing --------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The relay's ``/healthz`` (no key needed)."""
        return cast(dict[str, Any], self._request("GET", f"{self.url}/healthz", None, {}))

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        raw: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """Any service API call (``path`` after ``/api/v1/service``), with the key, timeout and
        retries of the others: the decoded JSON answer, or the refusal's exception."""
        url = f"{self.url}/api/v1/service{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}
        data: bytes | None = None
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif raw is not None:
            data = raw
            headers["Content-Type"] = "application/octet-stream"
        attempt = 0
        while True:
            try:
                return self._request(method, url, data, headers)
            except TallyError as e:
                if not e.retryable or attempt >= self.retries:
                    raise
                self._sleep(self._wait(e, attempt))
                attempt += 1

    def _wait(self, error: TallyError, attempt: int) -> float:
        if error.retry_after is not None:
            return min(error.retry_after, self.max_backoff * 4)
        ceiling = min(self.max_backoff, self.backoff * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)

    def _request(self, method: str, url: str, data: bytes | None, headers: Mapping[str, str]) -> Any:
        request = urllib.request.Request(url, data=data, method=method, headers=dict(headers))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            # Read the status first: a proxy's error page is not JSON.
            body = e.read()
            raise error_from(e.code, body, e.headers.get("Retry-After")) from None
        except (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise Unreachable(0, "unreachable", f"{method} {url}: {reason}") from e
        if not body:
            return None
        try:
            return json.loads(body)
        except ValueError as e:
            raise TallyError(200, "not_json", f"{method} {url} answered something that is not JSON") from e


def message_payload(
    *,
    sender: str,
    body: str = "",
    conversation: int | None = None,
    direct: Sequence[str] | None = None,
    attachments: Sequence[str] = (),
    reply_to: int | None = None,
    thread: int | None = None,
    client_id: str | None = None,
) -> dict[str, Any]:
    """The body of ``POST /messages`` for a message by ``sender``, with a ``client_id`` (a new
    one when none is given: keep the payload to retry it)."""
    payload: dict[str, Any] = {"sender": sender, "body": body}
    _where(payload, conversation, direct)
    if attachments:
        payload["attachments"] = list(attachments)
    if reply_to is not None:
        payload["reply_to"] = int(reply_to)
    if thread is not None:
        payload["thread"] = int(thread)
    payload["client_id"] = _checked_client_id(client_id)
    return payload


def notice_payload(
    *,
    title: str,
    text: str = "",
    conversation: int | None = None,
    direct: Sequence[str] | None = None,
    attachments: Sequence[str] = (),
    client_id: str | None = None,
) -> dict[str, Any]:
    """The body of ``POST /messages`` for a system notice, with a ``client_id``."""
    payload: dict[str, Any] = {"notice": {"title": title, "text": text}}
    _where(payload, conversation, direct)
    if attachments:
        payload["attachments"] = list(attachments)
    payload["client_id"] = _checked_client_id(client_id)
    return payload


def _checked_client_id(given: str | None) -> str:
    if given is None:
        return new_client_id()
    if not is_client_id(given):
        raise ValueError(f"not a client id: {given!r} (1 to 64 of A-Z a-z 0-9 . _ -; see client_id())")
    return given


def _segment(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _where(payload: dict[str, Any], conversation: int | None, direct: Sequence[str] | None) -> None:
    if (conversation is None) == (direct is None):
        raise ValueError("give exactly one of conversation= and direct=")
    if conversation is not None:
        payload["conversation"] = int(conversation)
    else:
        pair = list(direct or ())
        if len(pair) != 2:
            raise ValueError("direct= names exactly two people")
        payload["direct"] = pair
