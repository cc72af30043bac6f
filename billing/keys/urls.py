from django.urls import path

from billing.keys import views as web_views

urlpatterns = [
    path("keys/", web_views.key_list, name="key_list"),
    path("keys/new", web_views.key_create, name="key_create"),
    path("keys/<int:key_id>/revoke", web_views.key_revoke, name="key_revoke"),
    path("providers/", web_views.provider_list, name="provider_list"),
    path("providers/save", web_views.provider_save, name="provider_save"),
]
