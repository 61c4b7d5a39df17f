"""``{% load tally %}{% tally_widget %}``: the widget, mounted for the signed-in user.

Renders the queue snippet (so ``tally("open", {direct: "bob"})`` works before the widget has
loaded), the element the widget mounts into, and the loader from the relay. Options:
``{% tally_widget locale="de" theme="dark" title_badge=False element_id="chat" %}``. With a
content security policy, the snippet carries ``request.csp_nonce`` when there is one; otherwise
allow it by its hash (``tally_django.templatetags.tally.SNIPPET_SHA256``).
"""

from __future__ import annotations

import base64
import hashlib

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import conf

register = template.Library()

#: The queue snippet, verbatim: its hash is what a CSP allows it by.
SNIPPET = "window.tally=window.tally||function(){(tally.q=tally.q||[]).push(arguments)};"
SNIPPET_SHA256 = "sha256-" + base64.b64encode(hashlib.sha256(SNIPPET.encode()).digest()).decode()


@register.simple_tag(takes_context=True)
def tally_widget(
    context: template.Context,
    *,
    locale: str = "",
    theme: str = "",
    title_badge: bool = True,
    element_id: str = "tally",
) -> SafeString:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return SafeString("")
    nonce = getattr(request, "csp_nonce", "") or ""
    base = conf.public_url()
    return format_html(
        '<script{}>{}</script>\n'
        '<div id="{}" data-tally-token-url="{}" data-tally-relay-url="{}"{}{}{}></div>\n'
        '<script type="module" src="{}/tally-loader.js"{}></script>',
        format_html(' nonce="{}"', nonce) if nonce else "",
        SafeString(SNIPPET),
        element_id,
        reverse("tally:token"),
        base,
        format_html(' data-tally-locale="{}"', locale) if locale else "",
        format_html(' data-tally-theme="{}"', theme) if theme else "",
        SafeString(' data-tally-title-badge="false"') if not title_badge else "",
        base,
        format_html(' nonce="{}"', nonce) if nonce else "",
    )


@register.simple_tag
def tally_public_url() -> str:
    """The relay's base URL as browsers reach it (``TALLY_PUBLIC_URL``)."""
    return conf.public_url()
