from django.urls import include, path

from tests.labs import views

urlpatterns = [
    path("tally/", include("tally_django.urls")),
    path("", views.home),
]
