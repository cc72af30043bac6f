from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from billing.accounts.views import invitation_accept
from billing.sso.views import PasswordLoginView, PasswordResetRequestView
from proxy.views import metrics
from tokonomics import views
from tokonomics.api import api

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("login/", PasswordLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password-reset/", PasswordResetRequestView.as_view(), name="password_reset"),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("password-reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(),
         name="password_reset_confirm"),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("a/<slug:slug>/", include("billing.dashboard.urls")),
    path("a/<slug:slug>/", include("billing.calls.urls")),
    path("a/<slug:slug>/", include("billing.sessions.urls")),
    path("a/<slug:slug>/", include("billing.budgets.urls")),
    path("a/<slug:slug>/", include("billing.keys.urls")),
    path("a/<slug:slug>/", include("alerts.urls")),
    path("a/<slug:slug>/", include("billing.accounts.urls")),
    path("invitations/<str:token>/", invitation_accept, name="invitation_accept"),
    path("sso/", include("billing.sso.urls")),
    path("api/v1/", api.urls),
    path("admin/", admin.site.urls),
]
