"""Who the work app's users are in Tally: staff ids, names, and keeping the mirror in step."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save

from tally_client import StaffEntry

from . import conf

STAFF_ID = re.compile(r"[a-z0-9._-]{1,64}")


def default_staff_id(user: Any) -> str:
    """The lowercased username when it is a valid staff id (1 to 64 of ``a-z 0-9 . _ -``),
    else ``user-<pk>``. Set ``TALLY_STAFF_ID`` to use a field of your own that never changes."""
    username = str(user.get_username()).lower()
    if STAFF_ID.fullmatch(username) and username != "system":
        return username
    return f"user-{user.pk}"


def default_staff_name(user: Any) -> str:
    """The full name, else the username (at most 120 bytes)."""
    name = (user.get_full_name() if hasattr(user, "get_full_name") else "") or user.get_username()
    encoded = str(name).strip().encode("utf-8")[:120]
    return encoded.decode("utf-8", "ignore") or f"user-{user.pk}"


def default_staff() -> Iterable[Any]:
    """Every user."""
    return get_user_model()._default_manager.order_by("pk").iterator(chunk_size=2000)


def staff_id(user: Any) -> str:
    """``user``'s staff id, by ``TALLY_STAFF_ID``."""
    value = conf.function("TALLY_STAFF_ID")(user)
    if not isinstance(value, str) or not STAFF_ID.fullmatch(value) or value == "system":
        raise ValueError(f"TALLY_STAFF_ID gave {value!r} for user {user.pk}: not a staff id")
    return value


def entry(user: Any) -> StaffEntry:
    """``user`` as the relay's staff mirror takes them."""
    return {
        "id": staff_id(user),
        "name": conf.function("TALLY_STAFF_NAME")(user),
        "active": bool(getattr(user, "is_active", True)),
    }


def directory() -> list[StaffEntry]:
    """Every person ``TALLY_STAFF`` lists, as mirror entries."""
    return [entry(u) for u in conf.function("TALLY_STAFF")()]


#: Fields whose change is worth telling the relay about, when a save names its fields.
WATCHED = {"username", "first_name", "last_name", "is_active", "email"}


def _user_saved(sender: Any, instance: Any, created: bool, update_fields: Any = None, raw: bool = False, using: str = "default", **kwargs: Any) -> None:
    if raw or not conf.get("TALLY_SYNC_STAFF_ON_SAVE"):
        return
    # A login saves last_login only: nothing Tally shows changed.
    if update_fields is not None and not (set(update_fields) & WATCHED):
        return
    if conf.get("TALLY_URL") in (None, "") or conf.get("TALLY_SERVICE_KEY") in (None, ""):
        return
    from . import outbox

    person = entry(instance)
    outbox.upsert_staff(person["id"], person["name"], active=person["active"], using=using)


def connect_user_signals() -> None:
    post_save.connect(_user_saved, sender=get_user_model(), dispatch_uid="tally_django.user_saved")
