from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ... import conf, export


class Command(BaseCommand):
    help = (
        "Write the old chat's history in tally-relay's import format (JSON lines), from the "
        "records TALLY_EXPORT yields. Then: tally-relay import FILE --dry-run, and import."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("out", help="the file to write")

    def handle(self, *args: Any, out: str, **options: Any) -> None:
        records = conf.function("TALLY_EXPORT")()
        with open(out, "w", encoding="utf-8") as f:
            counts = export.write(records, f)
        summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
        self.stdout.write(f"wrote {out}: {summary}")
