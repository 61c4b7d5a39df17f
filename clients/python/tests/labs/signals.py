from django.db.models.signals import post_save
from django.dispatch import receiver

from tally_client import client_id
from tally_django import outbox, staff
from tests.labs.models import LabResult


@receiver(post_save, sender=LabResult)
def announce_result(sender, instance, created, **kwargs):
    if created:
        outbox.post_message(
            direct=[staff.staff_id(instance.ordered_by), staff.staff_id(instance.nurse)],
            sender=staff.staff_id(instance.ordered_by),
            body=f"Lab results for {instance.room} are in",
            client_id=client_id("lab-result", instance.pk),
        )
