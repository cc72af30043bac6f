from django.urls import path

from billing.keys import route_views, views

urlpatterns = [
    path("keys/", views.key_list, name="key_list"),
    path("keys/new", views.key_create, name="key_create"),
    path("keys/<int:key_id>/revoke", views.key_revoke, name="key_revoke"),
    path("keys/<int:key_id>/rotate", views.key_rotate, name="key_rotate"),
    path("keys/<int:key_id>/edit", views.key_edit, name="key_edit"),
    path("providers/", views.provider_list, name="provider_list"),
    path("providers/save", views.provider_save, name="provider_save"),
    path("providers/<int:endpoint_id>/edit", views.provider_edit, name="provider_edit"),
    path("providers/<int:endpoint_id>/delete", views.provider_delete, name="provider_delete"),
    path("providers/<int:endpoint_id>/test", views.provider_test, name="provider_test"),
    path("routes/", route_views.route_list, name="route_list"),
    path("routes/new", route_views.route_new, name="route_new"),
    path("routes/<int:route_id>/edit", route_views.route_edit, name="route_edit"),
    path("routes/<int:route_id>/delete", route_views.route_remove, name="route_delete"),
]
