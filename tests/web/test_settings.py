"""Account settings: owners change them, admins see them, white-label and SSO only where the plan has them."""

from __future__ import annotations

import pytest

from billing.models import Account, AuditEntry, SsoConfig, SsoDomain
from billing.sso.domains import sso_domain_approve
from tokonomics.crypto import decrypt_secret, secret_context

pytestmark = pytest.mark.django_db

GENERAL = {"name": "Acme Corp", "timezone": "Europe/Paris", "retention_days": "400",
           "on_redis_unavailable": "closed", "allow_unmetered_routes": "on", "allow_unpriced_models": "on"}
SSO = {"enabled": "on", "issuer": "https://login.acme.test/realms/main", "client_id": "tokonomics",
       "client_secret": "first-secret-value", "allowed_domains": "acme.test, @Acme.FR", "default_role": "member"}


def test_owner_saves_settings_with_htmx_and_the_change_is_audited(client_as, alice, htmx):
    response = client_as(alice).post("/a/acme/settings/general", GENERAL, **htmx)
    assert response.status_code == 204 and response["HX-Redirect"] == "/a/acme/settings/"
    acme = Account.objects.get(slug="acme")
    assert (acme.name, acme.timezone, acme.retention_days, acme.on_redis_unavailable, acme.allow_unmetered_routes,
            acme.allow_unpriced_models) == ("Acme Corp", "Europe/Paris", 400, "closed", True, True)
    entry = AuditEntry.objects.get(action="account.updated")
    assert entry.actor == alice
    assert entry.before == {"name": "Acme Inc", "timezone": "UTC", "retention_days": None,
                            "on_redis_unavailable": "default", "allow_unmetered_routes": False,
                            "allow_unpriced_models": False}
    assert entry.after["retention_days"] == 400


def test_settings_page_shows_the_plan_default_retention(client_as, alice):
    page = client_as(alice).get("/a/acme/settings/").content.decode()
    assert "Empty: the Pro plan&#x27;s 90 days" in page or "Empty: the Pro plan's 90 days" in page


def test_invalid_settings_rerender_the_form_partial_with_errors(client_as, alice, htmx):
    bad = GENERAL | {"retention_days": "0", "timezone": "Mars/Olympus"}
    response = client_as(alice).post("/a/acme/settings/general", bad, **htmx)
    page = response.content.decode()
    assert response.status_code == 200 and page.lstrip().startswith('<form id="settings-form"')
    assert "Ensure this value is greater than or equal to 1." in page
    assert "Mars/Olympus is not a time zone" in page
    assert Account.objects.get(slug="acme").name == "Acme Inc"
    assert not AuditEntry.objects.exists()
    assert client_as(alice).post("/a/acme/settings/general", bad).status_code == 400  # without HTMX: the page


def test_empty_retention_falls_back_to_the_plan(client_as, alice, acme):
    acme.retention_days = 10
    acme.save()
    client_as(alice).post("/a/acme/settings/general", GENERAL | {"retention_days": ""})
    acme.refresh_from_db()
    assert acme.retention_days is None and acme.effective_retention_days == 90


@pytest.mark.parametrize(("role", "may_view", "may_edit"), [
    ("viewer", False, False), ("member", False, False), ("admin", True, False), ("owner", True, True),
])
def test_role_matrix_for_settings(client_as, acme, alice, enterprise, role, may_view, may_edit):
    from ..support import user_with_seat

    client = client_as(alice if role == "owner" else user_with_seat(f"{role}@acme.test", acme, role))
    page = client.get("/a/acme/settings/")
    assert page.status_code == (200 if may_view else 403)
    if may_view and not may_edit:
        assert "Only an owner can change these settings" in page.content.decode()
        assert "Save settings" not in page.content.decode()
    expected = 302 if may_edit else 403
    assert client.post("/a/acme/settings/general", GENERAL).status_code == expected
    assert client.post("/a/acme/settings/branding", {"brand_name": "Roadrunner"}).status_code == expected
    assert client.post("/a/acme/settings/sso", SSO).status_code == expected
    assert AuditEntry.objects.exclude(action="sso.domain_claimed").count() == (3 if may_edit else 0)


def test_outsider_gets_404_on_every_settings_view(client_as, alice, enterprise, charlie):
    outsider = client_as(charlie)
    assert outsider.get("/a/acme/settings/").status_code == 404
    assert outsider.post("/a/acme/settings/general", GENERAL).status_code == 404
    assert outsider.post("/a/acme/settings/branding", {"brand_name": "Pwned"}).status_code == 404
    assert outsider.post("/a/acme/settings/sso", SSO).status_code == 404
    assert Account.objects.get(slug="acme").name == "Acme Inc"


# --- white-label ---


def test_white_label_is_locked_with_the_reason_below_enterprise(client_as, alice):
    owner = client_as(alice)
    page = owner.get("/a/acme/settings/").content.decode()
    assert 'id="branding-locked"' in page and "Enterprise plan" in page
    assert "on the Pro plan" in page
    assert owner.post("/a/acme/settings/branding", {"brand_name": "Roadrunner"}).status_code == 403
    assert Account.objects.get(slug="acme").brand_name == ""


def test_enterprise_branding_applies_across_the_app(client_as, alice, enterprise):
    owner = client_as(alice)
    response = owner.post("/a/acme/settings/branding", {
        "brand_name": "Roadrunner AI", "brand_logo_url": "https://cdn.acme.test/logo.png",
        "brand_accent_color": "#ff6600",
    })
    assert response.status_code == 302
    page = owner.get("/a/acme/team/").content.decode()
    assert "<span>Roadrunner AI</span>" in page and "--accent: #ff6600" in page
    assert 'src="https://cdn.acme.test/logo.png"' in page
    entry = AuditEntry.objects.get(action="account.branding_changed")
    assert entry.after == {"brand_name": "Roadrunner AI", "brand_logo_url": "https://cdn.acme.test/logo.png",
                           "brand_accent_color": "#ff6600"}


def test_a_bad_accent_colour_is_an_inline_error(client_as, alice, enterprise, htmx):
    response = client_as(alice).post("/a/acme/settings/branding", {"brand_accent_color": "orange;}"}, **htmx)
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<form id="branding-form"')
    assert "Use a colour like #4f46e5." in response.content.decode()


# --- single sign-on settings ---


def test_sso_is_locked_with_the_reason_below_enterprise(client_as, alice):
    owner = client_as(alice)
    assert 'id="sso-locked"' in owner.get("/a/acme/settings/").content.decode()
    assert owner.post("/a/acme/settings/sso", SSO).status_code == 403
    assert not SsoConfig.objects.exists()


def test_sso_secret_is_encrypted_write_only_and_never_logged(client_as, alice, enterprise):
    owner = client_as(alice)
    assert owner.post("/a/acme/settings/sso", SSO).status_code == 302
    config = SsoConfig.objects.get(account=enterprise)
    assert list(config.domains.values_list("domain", "status")) == [("acme.fr", "pending"), ("acme.test", "pending")]
    assert config.default_role == "member"
    assert "first-secret-value" not in config.secret_encrypted
    context = secret_context(config, "secret_encrypted")
    assert decrypt_secret(config.secret_encrypted, context=context) == "first-secret-value"
    page = owner.get("/a/acme/settings/").content.decode()
    assert "first-secret-value" not in page and "/sso/callback/" in page
    # Left empty, the stored secret is kept; the log says that it changed, never what it is.
    owner.post("/a/acme/settings/sso", SSO | {"client_secret": "", "default_role": "viewer"})
    config.refresh_from_db()
    assert config.client_secret() == "first-secret-value" and config.default_role == "viewer"
    entries = list(AuditEntry.objects.filter(action__in=["sso.configured", "sso.updated"]).order_by("pk"))
    assert [e.action for e in entries] == ["sso.configured", "sso.updated"]
    assert entries[0].after["client_secret"] == "(changed)"
    assert entries[1].before == {"default_role": "member"} and entries[1].after == {"default_role": "viewer"}
    assert "first-secret-value" not in str([(e.before, e.after) for e in entries])



def test_the_stored_sso_secret_never_follows_the_issuer_to_another_host(client_as, alice, enterprise, htmx):
    """The secret is sent to the issuer's token endpoint: pointing the issuer elsewhere needs it again."""
    owner = client_as(alice)
    assert owner.post("/a/acme/settings/sso", SSO).status_code == 302
    for elsewhere in ("https://idp.globex.test/realms/main", "https://login.acme.test:8443/realms/main"):
        moved = owner.post("/a/acme/settings/sso", SSO | {"issuer": elsewhere, "client_secret": ""}, **htmx)
        assert moved.status_code == 200 and "enter the client secret again" in moved.content.decode()
        config = SsoConfig.objects.get(account=enterprise)
        assert config.issuer == SSO["issuer"] and config.client_secret() == "first-secret-value"
    # The same host (another realm) keeps it; a secret entered with the move is the new host's.
    same_host = SSO | {"issuer": "https://login.acme.test/realms/other", "client_secret": ""}
    assert owner.post("/a/acme/settings/sso", same_host).status_code == 302
    assert SsoConfig.objects.get(account=enterprise).client_secret() == "first-secret-value"
    moved_with_secret = SSO | {"issuer": "https://idp.globex.test/realms/main", "client_secret": "globex-secret"}
    assert owner.post("/a/acme/settings/sso", moved_with_secret).status_code == 302
    config = SsoConfig.objects.get(account=enterprise)
    assert (config.issuer, config.client_secret()) == ("https://idp.globex.test/realms/main", "globex-secret")


def test_the_sso_service_refuses_to_carry_the_secret_to_another_host(alice, enterprise):
    from django.core.exceptions import ValidationError

    from billing.accounts.services import sso_config_update

    fields = {"account": enterprise, "actor": alice, "enabled": True, "client_id": "tokonomics",
              "allowed_domains": ["acme.test"], "default_role": "member", "password_login_disabled": False}
    sso_config_update(**fields, issuer=SSO["issuer"], client_secret="first-secret-value")
    with pytest.raises(ValidationError) as refused:
        sso_config_update(**fields, issuer="https://idp.globex.test/realms/main", client_secret=None)
    assert "client_secret" in refused.value.message_dict
    assert SsoConfig.objects.get(account=enterprise).issuer == SSO["issuer"]

def test_sso_needs_a_secret_https_and_domains_of_its_own(client_as, alice, enterprise, charlie, plans, htmx):
    owner = client_as(alice)
    no_secret = owner.post("/a/acme/settings/sso", SSO | {"client_secret": ""}, **htmx)
    assert "Enter the client secret" in no_secret.content.decode()
    plain_http = owner.post("/a/acme/settings/sso", SSO | {"issuer": "http://login.acme.test"}, **htmx)
    assert "The issuer must be an https:// URL." in plain_http.content.decode()
    bad_domain = owner.post("/a/acme/settings/sso", SSO | {"allowed_domains": "acme, ok.test"}, **htmx)
    assert "Not a domain: acme." in bad_domain.content.decode()

    globex = Account.objects.get(slug="globex")
    globex.plan = plans["enterprise"]
    globex.save()
    assert owner.post("/a/acme/settings/sso", SSO).status_code == 302
    sso_domain_approve(claim=SsoDomain.objects.get(domain="acme.test"), actor=alice)
    stolen = client_as(charlie).post("/a/globex/settings/sso", SSO | {"allowed_domains": "globex.test, acme.test"},
                                     **htmx)
    assert stolen.status_code == 200
    assert "acme.test already signs in through another account." in stolen.content.decode()
    assert not SsoConfig.objects.filter(account=globex).exists()


def test_retention_past_a_century_is_a_form_error(client_as, alice, acme):
    response = client_as(alice).post("/a/acme/settings/general", GENERAL | {"retention_days": "1000000000"})
    assert response.status_code == 400 and "less than or equal to 36500" in response.content.decode()
    acme.refresh_from_db()
    assert acme.retention_days is None
