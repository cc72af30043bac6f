from django.urls import path

from billing.accounts import views as team_views

urlpatterns = [
    path("team/", team_views.team, name="team"),
    path("team/invite", team_views.seat_invite, name="seat_invite"),
    path("team/invitations/<int:invitation_id>/withdraw", team_views.invitation_withdraw, name="invitation_withdraw"),
    path("team/seats/<int:seat_id>", team_views.seat_update, name="seat_update"),
    path("team/seats/<int:seat_id>/remove", team_views.seat_remove, name="seat_remove"),
    path("settings/", team_views.account_settings, name="account_settings"),
    path("settings/general", team_views.account_settings_update, name="account_settings_update"),
    path("settings/branding", team_views.branding_update, name="branding_update"),
    path("settings/sso", team_views.sso_config_update, name="sso_config_update"),
    path("settings/sso/domains/<int:domain_id>/confirm", team_views.sso_domain_confirmation_send,
         name="sso_domain_confirmation_send"),
    path("audit/", team_views.audit_log, name="audit_log"),
]
