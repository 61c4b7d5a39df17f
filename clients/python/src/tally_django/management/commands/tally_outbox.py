from __future__ import annotations

import datetime as dt
import signal
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections
from django.utils import timezone

from ... import outbox
from ...models import OutboxItem, WebhookDelivery


class Command(BaseCommand):
    help = (
        "Send what the outbox holds to the relay, retrying with backoff until it has it. Runs "
        "until stopped (SIGTERM or SIGINT end it between rows); --once sends what is due and exits."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between passes when idle")
        parser.add_argument("--prune", action="store_true", help="also delete webhook ids older than 14 days")

    def handle(self, *args: Any, once: bool, interval: float, prune: bool, **options: Any) -> None:
        stop = False

        def ask_to_stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stop
            stop = True

        if not once:
            signal.signal(signal.SIGTERM, ask_to_stop)
            signal.signal(signal.SIGINT, ask_to_stop)
        tally = outbox.client()
        while True:
            close_old_connections()
            done = outbox.drain(tally)
            if done.sent or done.failed:
                self.stdout.write(f"sent {done.sent}, failed {done.failed}, pending {outbox.pending()}")
            if prune:
                horizon = timezone.now() - dt.timedelta(days=14)
                WebhookDelivery.objects.filter(received_at__lt=horizon).delete()
            if once or stop:
                break
            if not done.sent:
                time.sleep(interval)
        failed = OutboxItem.objects.filter(failed_at__isnull=False).count()
        if failed:
            self.stderr.write(f"{failed} outbox items were refused or given up (see the admin or OutboxItem)")
