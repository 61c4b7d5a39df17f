from django.contrib import admin

from .models import OutboxItem, WebhookDelivery


@admin.register(OutboxItem)
class OutboxItemAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "method", "path", "created_at", "attempts", "next_attempt_at", "failed_at", "last_error")
    list_filter = ("failed_at",)
    readonly_fields = ("method", "path", "body", "created_at")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "event_type", "received_at")
    readonly_fields = ("id", "event_type", "received_at")
