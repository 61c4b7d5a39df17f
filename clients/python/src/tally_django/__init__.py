"""Tally in a Django project: add ``"tally_django"`` to ``INSTALLED_APPS``.

- settings, all ``TALLY_*`` (:mod:`tally_django.conf` lists them);
- ``path("tally/", include("tally_django.urls"))``: the widget's token view and the webhook view;
- ``{% load tally %}{% tally_widget %}`` in a template: the widget, mounted;
- :mod:`tally_django.outbox`: posts written in your own transaction and sent after it commits,
  retried by ``manage.py tally_outbox`` until the relay has them (never lost, never twice);
- :data:`tally_django.signals.webhook_received`: verified, deduplicated webhook events;
- commands ``tally_sync_staff``, ``tally_upsert_staff``, ``tally_outbox`` and ``tally_export``.
"""
