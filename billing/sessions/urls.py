from django.urls import path

from billing.sessions import views

urlpatterns = [
    path("sessions/", views.session_list_view, name="session_list"),
]
