from django.urls import path

from alerts import views

urlpatterns = [
    path("alerts/", views.alert_settings, name="alert_settings"),
    path("alerts/channels/new", views.channel_create, name="alert_channel_create"),
    path("alerts/channels/<int:channel_id>/test", views.channel_test, name="alert_channel_test"),
    path("alerts/channels/<int:channel_id>/edit", views.channel_edit, name="alert_channel_edit"),
    path("alerts/channels/<int:channel_id>/delete", views.channel_delete, name="alert_channel_delete"),
    path("alerts/channels/<int:channel_id>/enabled", views.channel_enable, name="alert_channel_enable"),
    path("alerts/rules/new", views.rule_create, name="alert_rule_create"),
    path("alerts/rules/<int:rule_id>/edit", views.rule_edit, name="alert_rule_edit"),
    path("alerts/rules/<int:rule_id>/delete", views.rule_delete, name="alert_rule_delete"),
    path("alerts/rules/<int:rule_id>/enabled", views.rule_enable, name="alert_rule_enable"),
]
