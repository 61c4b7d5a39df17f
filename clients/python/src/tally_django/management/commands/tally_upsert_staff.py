from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import outbox, staff


class Command(BaseCommand):
    help = "Add or update one user in the relay's staff (nobody else changes)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="the user's username")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User._default_manager.get_by_natural_key(username)
        except User.DoesNotExist:
            raise CommandError(f"no user {username!r}") from None
        person = staff.entry(user)
        outbox.client(retries=4).upsert_staff(person["id"], person["name"], active=person["active"])
        state = "active" if person["active"] else "inactive"
        self.stdout.write(f"{person['id']} ({person['name']}, {state})")
