from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ... import outbox, staff


class Command(BaseCommand):
    help = (
        "Mirror every person TALLY_STAFF lists into the relay's staff (added, renamed, "
        "(re)activated). Nobody else changes unless --deactivate-missing is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--deactivate-missing",
            action="store_true",
            help="also deactivate everyone the relay has who is not in the list",
        )

    def handle(self, *args: Any, deactivate_missing: bool, **options: Any) -> None:
        people = staff.directory()
        report = outbox.client(retries=4).mirror_staff(people, deactivate_missing=deactivate_missing)
        self.stdout.write(
            f"{len(people)} staff: {report['added']} added, {report['changed']} changed, "
            f"{report['deactivated_missing']} deactivated"
        )
