from django.urls import path

from alerts import views

urlpatterns = [
    path("alerts/", views.alert_settings, name="alert_settings"),
    path("alerts/channels/new", views.channel_create, name="alert_channel_create"),
    path("alerts/channels/<int:channel_id>/test", views.channel_test, name="alert_channel_test"),
    path("alerts/rules/new", views.rule_create, name="alert_rule_create"),
]
