"""Keys, budgets, providers and alert channels configured in the web app: rights, isolation, audit."""

from __future__ import annotations

import pytest
from django.urls import reverse

from billing.models import AuditEntry, Budget, Seat
from proxy.keys import hash_key
from proxy.models import ApiKey, ProviderEndpoint

pytestmark = pytest.mark.django_db


def _seat(email: str, account, role: str):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=email, email=email, password="pw long enough 1")
    Seat.objects.create(account=account, user=user, role=role)
    return user


def test_member_creates_a_key_and_sees_its_plaintext_once(client, bob, acme) -> None:
    client.force_login(bob)
    posted = client.post(reverse("key_create", args=["acme"]),
                         {"name": "ci", "environment": "staging", "allowed_models": "gpt-4o-mini, claude-*"})
    assert posted.status_code == 302  # post/redirect/get: a refresh never resubmits the form
    response = client.get(posted["Location"])
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    key = ApiKey.objects.get(account=acme, name="ci")
    plaintext = response.content.decode().split('id="new-key-value">')[1].split("<")[0]
    assert hash_key(plaintext) == key.key_hash and key.allowed_models == ["gpt-4o-mini", "claude-*"]
    assert plaintext not in client.get(reverse("key_list", args=["acme"])).content.decode()
    entry = AuditEntry.objects.get(account=acme, action="key.created")
    assert entry.actor == bob and plaintext not in str(entry.after) and "key_hash" not in entry.after
    client.post(reverse("key_revoke", args=["acme", key.pk]))
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditEntry.objects.filter(action="key.revoked").exists()


def test_duplicate_key_name_is_an_inline_error(client, bob, acme) -> None:
    client.force_login(bob)
    client.post(reverse("key_create", args=["acme"]), {"name": "ci", "environment": "production"})
    again = client.post(reverse("key_create", args=["acme"]), {"name": "ci", "environment": "production"})
    assert again.status_code == 400 and "already has a key named" in again.content.decode()


def test_viewer_cannot_create_keys_and_member_cannot_manage_budgets(client, acme) -> None:
    viewer = _seat("vera@acme.test", acme, "viewer")
    member = _seat("max@acme.test", acme, "member")
    client.force_login(viewer)
    assert client.get(reverse("key_list", args=["acme"])).status_code == 200
    assert client.post(reverse("key_create", args=["acme"]), {"name": "x", "environment": "p"}).status_code == 403
    client.force_login(member)
    budget = {"scope": "account", "match": "", "period": "month", "limit_usd": "10", "hard": "on", "alert_at": "50"}
    assert client.post(reverse("budget_create", args=["acme"]), budget).status_code == 403
    assert client.post(reverse("provider_save", args=["acme"]), {"slug": "openai"}).status_code == 403
    assert client.post(reverse("alert_channel_create", args=["acme"]), {}).status_code == 403


def test_admin_sets_budgets_with_inline_validation(client, acme) -> None:
    admin = _seat("ada@acme.test", acme, "admin")
    client.force_login(admin)
    bad = client.post(reverse("budget_create", args=["acme"]),
                      {"scope": "tenant", "match": "", "period": "month", "limit_usd": "5", "alert_at": "50, abc"},
                      headers={"HX-Request": "true"})
    assert bad.status_code == 200 and 'id="budget-form"' in bad.content.decode()
    assert "Use whole percentages" in bad.content.decode() and "needs a value to match" in bad.content.decode()
    good = client.post(reverse("budget_create", args=["acme"]),
                       {"scope": "tenant", "match": "*", "period": "day", "limit_usd": "5", "hard": "on",
                        "alert_at": "75, 50"}, headers={"HX-Request": "true"})
    assert good.status_code == 204 and good["HX-Redirect"].endswith("/a/acme/budgets/")
    budget = Budget.objects.get(account=acme)
    assert budget.alert_at == [50, 75] and budget.hard
    assert AuditEntry.objects.filter(action="budget.created", actor=admin).exists()


def test_provider_credential_is_write_only(client, alice, acme) -> None:
    client.force_login(alice)
    client.post(reverse("provider_save", args=["acme"]), {"slug": "openai", "credential": "sk-WEB-SECRET"})
    endpoint = ProviderEndpoint.objects.get(account=acme, slug="openai")
    assert endpoint.base_url == "https://api.openai.com/v1" and endpoint.get_credential() == "sk-WEB-SECRET"
    page = client.get(reverse("provider_list", args=["acme"])).content.decode()
    assert "sk-WEB-SECRET" not in page and "stored" in page
    assert "sk-WEB-SECRET" not in str(list(AuditEntry.objects.values_list("before", "after")))


def test_channel_and_test_alert(client, alice, acme, settings, django_capture_on_commit_callbacks) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    client.force_login(alice)
    created = client.post(reverse("alert_channel_create", args=["acme"]),
                          {"name": "ops", "kind": "email", "emails": "ops@acme.test"})
    assert created.status_code == 302
    channel = acme.alert_channels.get(name="ops")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("alert_channel_test", args=["acme", channel.pk]))
    from django.core import mail

    assert len(mail.outbox) == 1 and "test alert" in mail.outbox[0].subject
    page = client.get(reverse("alert_settings", args=["acme"])).content.decode()
    assert "delivered" in page


@pytest.mark.parametrize("name", ["key_list", "budget_list", "provider_list", "alert_settings"])
def test_outsider_gets_404_on_every_page(client, charlie, acme, name) -> None:
    client.force_login(charlie)
    assert client.get(reverse(name, args=["acme"])).status_code == 404


@pytest.mark.parametrize(("name", "args"), [("key_create", []), ("key_revoke", [1]), ("budget_create", []),
                                            ("budget_delete", [1]), ("provider_save", []),
                                            ("alert_channel_create", []), ("alert_channel_test", [1]),
                                            ("alert_rule_create", [])])
def test_outsider_gets_404_on_every_action(client, charlie, acme, name, args) -> None:
    client.force_login(charlie)
    assert client.post(reverse(name, args=["acme", *args]), {}).status_code == 404


def test_cannot_touch_another_accounts_objects_through_own_account(client, charlie, acme, globex) -> None:
    key = ApiKey.objects.create(account=acme, name="acme-key", key_hash="h" * 64, prefix="mk_x")
    budget = Budget.objects.create(account=acme, scope="account", period="month", limit_usd=1)
    client.force_login(charlie)
    assert client.post(reverse("key_revoke", args=["globex", key.pk])).status_code == 404
    assert client.post(reverse("budget_delete", args=["globex", budget.pk])).status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None and Budget.objects.filter(pk=budget.pk).exists()


@pytest.mark.parametrize("field", ["requests_per_minute", "tokens_per_minute", "max_concurrent"])
def test_key_limits_past_the_column_are_a_form_error(client, bob, acme, field) -> None:
    client.force_login(bob)
    response = client.post(reverse("key_create", args=["acme"]),
                           {"name": "ci", "environment": "production", field: str(2**31)})
    assert response.status_code == 400 and "less than or equal to 2147483647" in response.content.decode()
    assert not ApiKey.objects.filter(account=acme).exists()


@pytest.mark.parametrize(("field", "value"), [("multiplier", "1e20"), ("floor_usd", "99999999999999"),
                                              ("multiplier", "2.123")])
def test_burn_rate_rule_numbers_past_the_column_are_a_form_error(client, alice, acme, field, value) -> None:
    from alerts.models import AlertRule

    client.force_login(alice)
    data = {"scope": "account", "match": "*", "window_minutes": "15", "multiplier": "5", "floor_usd": "1",
            field: value}
    response = client.post(reverse("alert_rule_create", args=["acme"]), data)
    assert response.status_code == 400
    assert not AlertRule.objects.filter(account=acme).exists()


def _key_made_by(client, user, name: str) -> ApiKey:
    client.force_login(user)
    client.post(reverse("key_create", args=["acme"]), {"name": name, "environment": "production"})
    return ApiKey.objects.get(account__slug="acme", name=name)


def test_member_revokes_own_keys_but_not_an_owners(client, alice, bob, acme) -> None:
    owners = _key_made_by(client, alice, "owners-key")
    bobs = _key_made_by(client, bob, "bobs-key")
    page = client.get(reverse("key_list", args=["acme"])).content.decode()
    assert reverse("key_revoke", args=["acme", bobs.pk]) in page
    assert reverse("key_revoke", args=["acme", owners.pk]) not in page
    assert client.post(reverse("key_revoke", args=["acme", owners.pk])).status_code == 403
    owners.refresh_from_db()
    assert owners.revoked_at is None
    assert not AuditEntry.objects.filter(action="key.revoked", target="owners-key").exists()
    assert client.post(reverse("key_revoke", args=["acme", bobs.pk])).status_code == 302
    bobs.refresh_from_db()
    assert bobs.revoked_at is not None


def test_member_cannot_revoke_keys_of_unknown_origin(client, bob, acme) -> None:
    from ..support import KEY, make_key

    applied = make_key(acme, KEY, name="from-applyconfig")
    client.force_login(bob)
    assert client.post(reverse("key_revoke", args=["acme", applied.pk])).status_code == 403


def test_owner_and_admin_revoke_any_key(client, alice, bob, carol, acme) -> None:
    bobs = _key_made_by(client, bob, "bobs-key")
    others = _key_made_by(client, bob, "bobs-other-key")
    for user, key in ((alice, bobs), (carol, others)):
        client.force_login(user)
        page = client.get(reverse("key_list", args=["acme"])).content.decode()
        assert reverse("key_revoke", args=["acme", key.pk]) in page
        assert client.post(reverse("key_revoke", args=["acme", key.pk])).status_code == 302
        key.refresh_from_db()
        assert key.revoked_at is not None


def test_provider_deployments_are_edited_as_lines(client, alice, acme) -> None:
    client.force_login(alice)
    url = reverse("provider_save", args=["acme"])
    bad = client.post(url, {"slug": "azure-openai", "base_url": "https://acme.openai.azure.com",
                            "deployments": "prod-chat gpt-4o"})
    assert bad.status_code == 400 and "deployment = model" in bad.content.decode()
    client.post(url, {"slug": "azure-openai", "base_url": "https://acme.openai.azure.com",
                      "deployments": "prod-chat = gpt-4o-mini\n\nvectors = text-embedding-3-small"})
    endpoint = ProviderEndpoint.objects.get(account=acme, slug="azure-openai")
    assert endpoint.wire_format == "azure-openai"
    assert endpoint.deployments == {"prod-chat": "gpt-4o-mini", "vectors": "text-embedding-3-small"}
    page = client.get(reverse("provider_list", args=["acme"])).content.decode()
    assert "prod-chat" in page and "gpt-4o-mini" in page
    client.post(url, {"slug": "azure-openai", "credential": "az-key"})  # empty deployments: kept
    endpoint.refresh_from_db()
    assert len(endpoint.deployments) == 2
    client.post(url, {"slug": "azure-openai", "deployments": "-"})
    endpoint.refresh_from_db()
    assert endpoint.deployments == {}
