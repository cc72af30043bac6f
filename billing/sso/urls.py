from django.urls import path

from billing.sso import views

urlpatterns = [
    path("start/", views.sso_start, name="sso_start"),
    path("callback/", views.sso_callback, name="sso_callback"),
    path("domains/confirm/<str:token>/", views.sso_domain_confirm, name="sso_domain_confirm"),
]
