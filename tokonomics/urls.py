from django.contrib import admin
from django.urls import path

from proxy.views import metrics
from tokonomics import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
]
