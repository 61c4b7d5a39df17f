from django.urls import path

from . import views

app_name = "tally"

urlpatterns = [
    path("token", views.token, name="token"),
    path("webhook", views.webhook, name="webhook"),
]
