from django.apps import AppConfig


class LabsConfig(AppConfig):
    name = "tests.labs"
    label = "labs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from tests.labs import signals  # noqa: F401
