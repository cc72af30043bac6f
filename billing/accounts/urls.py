from django.urls import path

from billing.accounts import price_views, token_views, views

urlpatterns = [
    path("team/", views.team, name="team"),
    path("team/invite", views.seat_invite, name="seat_invite"),
    path("team/invitations/<int:invitation_id>/withdraw", views.invitation_withdraw, name="invitation_withdraw"),
    path("team/seats/<int:seat_id>", views.seat_update, name="seat_update"),
    path("team/seats/<int:seat_id>/remove", views.seat_remove, name="seat_remove"),
    path("settings/", views.account_settings, name="account_settings"),
    path("settings/general", views.account_settings_update, name="account_settings_update"),
    path("settings/branding", views.branding_update, name="branding_update"),
    path("settings/cache", views.cache_settings_update, name="cache_settings_update"),
    path("settings/sso", views.sso_config_update, name="sso_config_update"),
    path("settings/sso/domains/<int:domain_id>/confirm", views.sso_domain_confirmation_send,
         name="sso_domain_confirmation_send"),
    path("audit/", views.audit_log, name="audit_log"),
    path("prices/", price_views.price_list, name="price_list"),
    path("prices/new", price_views.price_create, name="price_create"),
    path("prices/<int:price_id>", price_views.price_update, name="price_update"),
    path("prices/<int:price_id>/delete", price_views.price_delete, name="price_delete"),
    path("api-tokens/", token_views.token_list, name="token_list"),
    path("api-tokens/new", token_views.token_create, name="token_create"),
    path("api-tokens/<int:token_id>/revoke", token_views.token_revoke, name="token_revoke"),
]
