"""The widget's token view and the webhook view (``tally_django.urls``)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from tally_client import WebhookVerificationError, WebhookVerifier, staff_token

from . import conf, staff
from .models import WebhookDelivery
from .signals import webhook_received

log = logging.getLogger("tally.webhooks")


@never_cache
@require_GET
def token(request: HttpRequest) -> HttpResponse:
    """A fresh widget token for the signed-in user, as text; ``401`` (never a redirect to a login
    page, which the widget would take for a token) when nobody is signed in."""
    user = request.user
    if not user.is_authenticated or not user.is_active:
        return JsonResponse({"code": "unauthorized", "message": "not signed in"}, status=401)
    ttl = int(conf.get("TALLY_TOKEN_TTL"))
    minted = staff_token(staff.staff_id(user), conf.required("TALLY_SECRET"), ttl=ttl)
    return HttpResponse(minted, content_type="text/plain; charset=utf-8")


@csrf_exempt
@require_POST
def webhook(request: HttpRequest) -> HttpResponse:
    """Verifies a delivery (Standard Webhooks), records its id, and sends
    :data:`~tally_django.signals.webhook_received` once per delivery: ``204`` when handled,
    ``200`` for a repeat, ``400`` for a delivery that is not genuine or too old."""
    verifier = WebhookVerifier(
        conf.required("TALLY_WEBHOOK_SECRET"), tolerance=int(conf.get("TALLY_WEBHOOK_TOLERANCE"))
    )
    try:
        event = verifier.verify(request.body, request.headers)
    except WebhookVerificationError as e:
        return JsonResponse({"code": "invalid_signature", "message": str(e)}, status=400)
    with transaction.atomic():
        _, first = WebhookDelivery.objects.get_or_create(id=event.id, defaults={"event_type": event.type})
        if not first:
            return HttpResponse(status=200)  # delivered before: handled already
        # A receiver that raises rolls the record back: the relay delivers it again.
        webhook_received.send(sender=WebhookDelivery, event=event)
    return HttpResponse(status=204)
