"""A host app's model, as in the guide: a saved lab result tells the nurse, through the outbox."""

from django.conf import settings
from django.db import models


class LabResult(models.Model):
    room = models.CharField(max_length=20)
    ordered_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    nurse = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
