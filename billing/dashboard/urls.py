from django.urls import path

from billing.dashboard import views

urlpatterns = [
    path("", views.dashboard_view, name="dashboard"),
    path("breakdown/<str:dimension>.csv", views.breakdown_csv, name="breakdown_csv"),
]
