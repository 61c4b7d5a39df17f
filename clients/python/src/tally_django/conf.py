"""Every setting of the Tally app, with its default. Read at use, so tests may override them.

=============================  ==========================================================================
``TALLY_URL``                  the relay as this server reaches it (``http://127.0.0.1:8080``); required
``TALLY_PUBLIC_URL``           the relay as browsers reach it (``/chat`` behind your proxy); default
                               ``TALLY_URL``
``TALLY_SERVICE_KEY``          a service key (``tally-relay service-key create NAME``); required to post
``TALLY_SECRET``               the token secret shared with the relay (its ``TALLY_SECRET``, ≥ 32 bytes)
``TALLY_WEBHOOK_SECRET``       the ``whsec_…`` secret ``tally-relay webhook add`` printed
``TALLY_TOKEN_TTL``            seconds a widget token lives (900)
``TALLY_STAFF_ID``             dotted path of ``f(user) -> staff id`` (the lowercased username, or
                               ``user-<pk>`` when it is not a valid staff id)
``TALLY_STAFF_NAME``           dotted path of ``f(user) -> name`` (full name, else the username)
``TALLY_STAFF``                dotted path of ``f() -> users`` to mirror (every user)
``TALLY_SYNC_STAFF_ON_SAVE``   mirror a user through the outbox when they are saved (True)
``TALLY_SEND_ON_COMMIT``       try an outbox row right after its transaction commits (True); the
                               worker sends whatever that attempt did not
``TALLY_ON_COMMIT_TIMEOUT``    seconds that attempt may take (2)
``TALLY_TIMEOUT``              seconds a call from the worker or the commands may take (10)
``TALLY_OUTBOX_MAX_AGE``       seconds after which an unsent row is given up, not retried (6 days: the
                               relay remembers client ids for 7)
``TALLY_WEBHOOK_TOLERANCE``    seconds a webhook's timestamp may be from now (300)
``TALLY_EXPORT``               dotted path of ``f() -> records`` for ``manage.py tally_export``
=============================  ==========================================================================
"""

from __future__ import annotations

from typing import Any, Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

DEFAULTS: dict[str, Any] = {
    "TALLY_URL": None,
    "TALLY_PUBLIC_URL": None,
    "TALLY_SERVICE_KEY": None,
    "TALLY_SECRET": None,
    "TALLY_WEBHOOK_SECRET": None,
    "TALLY_TOKEN_TTL": 900,
    "TALLY_STAFF_ID": "tally_django.staff.default_staff_id",
    "TALLY_STAFF_NAME": "tally_django.staff.default_staff_name",
    "TALLY_STAFF": "tally_django.staff.default_staff",
    "TALLY_SYNC_STAFF_ON_SAVE": True,
    "TALLY_SEND_ON_COMMIT": True,
    "TALLY_ON_COMMIT_TIMEOUT": 2.0,
    "TALLY_TIMEOUT": 10.0,
    "TALLY_OUTBOX_MAX_AGE": 6 * 24 * 3600,
    "TALLY_WEBHOOK_TOLERANCE": 300,
    "TALLY_EXPORT": None,
}


def get(name: str) -> Any:
    """A setting, or its default."""
    if name not in DEFAULTS:
        raise KeyError(name)
    return getattr(settings, name, DEFAULTS[name])


def required(name: str) -> Any:
    """A setting that must be set."""
    value = get(name)
    if value in (None, ""):
        raise ImproperlyConfigured(f"set {name} in your settings (tally_django.conf lists them all)")
    return value


def function(name: str) -> Callable[..., Any]:
    """A setting that names a function (or is one)."""
    value = required(name)
    return value if callable(value) else import_string(value)


def public_url() -> str:
    """The relay's base URL as browsers reach it, without a trailing slash."""
    url = get("TALLY_PUBLIC_URL") or required("TALLY_URL")
    return str(url).rstrip("/")
