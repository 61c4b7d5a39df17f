from django.apps import AppConfig


class TallyConfig(AppConfig):
    name = "tally_django"
    label = "tally"
    verbose_name = "Tally"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import staff

        staff.connect_user_signals()
