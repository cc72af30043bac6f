from django.urls import path

from billing.sso import views as sso_views

urlpatterns = [
    path("start/", sso_views.sso_start, name="sso_start"),
    path("callback/", sso_views.sso_callback, name="sso_callback"),
    path("domains/confirm/<str:token>/", sso_views.sso_domain_confirm, name="sso_domain_confirm"),
]
