"""The operator admin is a fourth way in: its changes go through the same services and leave the same audit
entries as the web app's (tests/tokonomics/test_audit_by_channel.py), with the staff user as actor."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from alerts.models import AlertChannel
from alerts.services import alert_channel_create
from billing.accounts.management_tokens import management_token_create
from billing.models import Account, AuditEntry, Budget, ManagementToken, PriceOverride, Seat
from proxy.models import ApiKey, ProviderEndpoint
from tests.tokonomics.test_audit_by_channel import ROTATED, SCENARIOS, SECRET, SETUP
from tokonomics.audit import Actor

pytestmark = pytest.mark.django_db

CHANGE = {"_save": "Save"}


def _add(model: str) -> str:
    return reverse(f"admin:{model}_add")


def _change(model: str, pk: int) -> str:
    return reverse(f"admin:{model}_change", args=[pk])


def _post(client: Client, url: str, data: dict[str, Any]) -> None:
    response = client.post(url, data)
    # A saved admin form redirects (or, for a new key, shows its plaintext); a refused one is shown again.
    errors = response.context and response.context.get("errors")
    assert response.status_code in (200, 302) and not errors, (response.status_code, errors)


KEY_FORM = {"name": "ci", "environment": "staging", "allowed_models": '["gpt-4o-mini"]', "expires_at_0": "",
            "expires_at_1": "", "requests_per_minute": "", "tokens_per_minute": "", "max_concurrent": ""}
BUDGET_FORM = {"scope": "tenant", "match": "*", "period": "month", "hard": "on", "alert_at": "[50, 100]",
               "on_exceed": "deny", "downgrade_to": "", "downgrade_at": "90"}
ENDPOINT_FORM = {"wire_format": "anthropic", "base_url": "https://api.anthropic.com", "pricing_provider": "anthropic"}

AdminWay = Callable[[Client, Account, Any], None]
ADMIN_WAYS: dict[str, AdminWay] = {
    "key created": lambda c, acme, _: _post(c, _add("proxy_apikey"), {"account": acme.pk, **KEY_FORM}),
    "key updated": lambda c, _, key: _post(c, _change("proxy_apikey", key.pk), KEY_FORM),
    "key revoked": lambda c, _, key: _post(c, reverse("admin:proxy_apikey_changelist"),
                                           {"action": "revoke", admin.helpers.ACTION_CHECKBOX_NAME: [key.pk]}),
    "budget created": lambda c, acme, _: _post(c, _add("billing_budget"),
                                               {"account": acme.pk, "limit_usd": "5", **BUDGET_FORM}),
    "budget updated": lambda c, _, budget: _post(c, _change("billing_budget", budget.pk),
                                                 {"limit_usd": "7.5", **BUDGET_FORM}),
    "provider created": lambda c, acme, _: _post(c, _add("proxy_providerendpoint"),
                                                 {"account": acme.pk, "slug": "anthropic", "credential": SECRET}),
    "provider credential rotated": lambda c, _, endpoint: _post(c, _change("proxy_providerendpoint", endpoint.pk),
                                                                {**ENDPOINT_FORM, "credential": ROTATED}),
    "alert channel created": lambda c, acme, _: _post(c, _add("alerts_alertchannel"), {
        "account": acme.pk, "name": "ops", "kind": "email", "url": "", "emails": '["ops@acme.test"]'}),
    "alert rule created": lambda c, acme, _: _post(c, _add("alerts_alertrule"), {
        "account": acme.pk, "kind": "burn_rate", "scope": "tenant", "match": "*", "window_minutes": "15",
        "multiplier": "5", "floor_usd": "1", "enabled": "on"}),
}


@pytest.fixture
def operator(client: Client, superuser, acme) -> Client:
    client.force_login(superuser)
    return client


def _only_entry(action: str) -> AuditEntry:
    entries = list(AuditEntry.objects.filter(action=action))
    assert len(entries) == 1, [(e.action, e.target, e.before, e.after) for e in AuditEntry.objects.all()]
    return entries[0]


def _assert_by_operator(entry: AuditEntry, superuser) -> None:
    assert (entry.actor_kind, entry.actor_label, entry.actor) == ("user", "root@ops.test", superuser)


@pytest.mark.parametrize("name", list(ADMIN_WAYS))
def test_an_admin_change_leaves_the_web_apps_entry_with_the_operator_as_actor(
    operator: Client, superuser, acme: Account, name: str
) -> None:
    scenario = SCENARIOS[name]
    obj = scenario.setup(acme) if scenario.setup else None
    AuditEntry.objects.all().delete()  # the setup's own entries

    ADMIN_WAYS[name](operator, acme, obj)

    entry = _only_entry(scenario.action)
    after = dict(entry.after)
    if name == "key created":
        assert after.pop("prefix").startswith("mk_")
    if name == "key revoked":
        assert after["revoked_at"] >= entry.created_at.isoformat()[:19]
        after["revoked_at"] = "<now>"
    assert (entry.account, entry.target, entry.before, after) == (acme, scenario.target, scenario.before,
                                                                  scenario.after)
    _assert_by_operator(entry, superuser)
    assert AuditEntry.objects.count() == 1
    for secret in (SECRET, ROTATED):
        assert secret not in json.dumps([entry.before, entry.after])


def test_the_admin_covers_every_kind_of_object_of_the_channel_test() -> None:
    nouns = {SCENARIOS[name].action.split(".")[0] for name in ADMIN_WAYS}
    assert nouns == {s.action.split(".")[0] for s in SCENARIOS.values()}


def test_a_change_the_service_refuses_is_shown_on_the_form_and_writes_nothing(operator: Client, acme) -> None:
    response = operator.post(_add("billing_budget"), {"account": acme.pk, "limit_usd": "5", **BUDGET_FORM,
                                                      "scope": "key", "match": "no-such-key"})
    assert response.status_code == 200
    assert "no key named &#x27;no-such-key&#x27;" in response.content.decode()
    assert not Budget.objects.exists() and not AuditEntry.objects.exists()


def test_an_edit_that_changes_nothing_logs_nothing(operator: Client, acme) -> None:
    key = SCENARIOS["key updated"].setup(acme)
    AuditEntry.objects.all().delete()
    _post(operator, _change("proxy_apikey", key.pk), {**KEY_FORM, "allowed_models": "[]"})
    assert not AuditEntry.objects.exists()


def test_the_account_and_identity_of_an_object_are_not_editable(operator: Client, acme, plans) -> None:
    other = Account.objects.create(slug="globex", name="Globex", plan=plans["pro"])
    budget = SCENARIOS["budget updated"].setup(acme)
    _post(operator, _change("billing_budget", budget.pk), {"account": other.pk, "limit_usd": "5", **BUDGET_FORM})
    budget.refresh_from_db()
    assert budget.account == acme


def test_deleting_a_budget_is_audited_singly_and_in_bulk(operator: Client, superuser, acme) -> None:
    monthly = SCENARIOS["budget updated"].setup(acme)
    daily = Budget.objects.create(account=acme, scope="account", period="day", limit_usd=1)
    operator.post(reverse("admin:billing_budget_delete", args=[monthly.pk]), {"post": "yes"})
    operator.post(reverse("admin:billing_budget_changelist"),
                  {"action": "delete_selected", "post": "yes", admin.helpers.ACTION_CHECKBOX_NAME: [daily.pk]})
    assert not Budget.objects.exists()
    entries = AuditEntry.objects.filter(action="budget.deleted").order_by("id")
    assert [e.target for e in entries] == ["tenant * / month", "account / day"]
    for entry in entries:
        _assert_by_operator(entry, superuser)


def test_changing_and_deleting_an_alert_channel_is_audited_without_its_secret(
    operator: Client, superuser, acme
) -> None:
    secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"  # 24 bytes
    channel, _ = alert_channel_create(account=acme, actor=SETUP, name="hooks", kind="webhook",
                                      url="https://hooks.acme.test/tk")
    AuditEntry.objects.all().delete()
    page = operator.get(_change("alerts_alertchannel", channel.pk)).content.decode()
    assert channel.get_secret() not in page
    _post(operator, _change("alerts_alertchannel", channel.pk), {
        "name": "hooks", "kind": "webhook", "url": "https://hooks.acme.test/tk", "emails": "[]", "secret": secret})
    channel.refresh_from_db()
    assert channel.get_secret() == secret
    entry = _only_entry("alert_channel.updated")
    assert (entry.target, entry.before, entry.after) == ("hooks", {"secret_changed": False}, {"secret_changed": True})
    _assert_by_operator(entry, superuser)
    operator.post(reverse("admin:alerts_alertchannel_delete", args=[channel.pk]), {"post": "yes"})
    deleted = _only_entry("alert_channel.deleted")
    assert deleted.target == "hooks" and secret not in json.dumps(deleted.before)
    assert not AlertChannel.objects.exists()


def test_a_new_webhook_channels_generated_secret_is_shown_once_and_never_logged(operator: Client, acme) -> None:
    response = operator.post(_add("alerts_alertchannel"), {
        "account": acme.pk, "name": "hooks", "kind": "webhook", "url": "https://hooks.acme.test/tk", "emails": "[]"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    channel = AlertChannel.objects.get(name="hooks")
    secret = response.context["secret"]
    assert secret.startswith("whsec_") and secret == channel.get_secret() and secret in response.content.decode()
    assert secret not in json.dumps(_only_entry("alert_channel.created").after)
    assert secret not in operator.get(_change("alerts_alertchannel", channel.pk)).content.decode()


def test_a_removed_endpoint_credential_is_logged_without_its_value(operator: Client, acme) -> None:
    endpoint = SCENARIOS["provider credential rotated"].setup(acme)
    AuditEntry.objects.all().delete()
    _post(operator, _change("proxy_providerendpoint", endpoint.pk), {**ENDPOINT_FORM, "clear_credential": "on"})
    entry = _only_entry("provider.updated")
    assert entry.after == {"has_credential": False, "credential_changed": True}
    assert not ProviderEndpoint.objects.get().has_credential


def test_seats_are_set_and_removed_through_the_services_never_the_last_owner(
    operator: Client, superuser, acme, alice, bob
) -> None:
    AuditEntry.objects.all().delete()
    bob_seat = Seat.objects.get(user=bob)
    _post(operator, _change("billing_seat", bob_seat.pk), {"role": "admin"})
    changed = _only_entry("seat.role_changed")
    assert (changed.target, changed.before, changed.after) == ("bob@acme.test", {"role": "member"}, {"role": "admin"})
    _assert_by_operator(changed, superuser)

    alice_seat = Seat.objects.get(user=alice)
    response = operator.post(reverse("admin:billing_seat_delete", args=[alice_seat.pk]), {"post": "yes"}, follow=True)
    assert "last owner" in response.content.decode()
    assert Seat.objects.filter(pk=alice_seat.pk).exists() and not AuditEntry.objects.filter(action="seat.removed")

    operator.post(reverse("admin:billing_seat_delete", args=[bob_seat.pk]), {"post": "yes"})
    removed = _only_entry("seat.removed")
    assert (removed.target, removed.before) == ("bob@acme.test", {"email": "bob@acme.test", "role": "admin"})


def test_account_changes_are_logged_as_the_settings_pages_log_them(operator: Client, superuser, acme) -> None:
    form = {"name": "Acme Corp", "plan": acme.plan.pk, "timezone": "UTC", "retention_days": "",
            "on_redis_unavailable": acme.on_redis_unavailable, "brand_name": "Acme AI", "brand_logo_url": "",
            "brand_accent_color": "", "cache_ttl_seconds": acme.cache_ttl_seconds,
            "cache_max_entry_bytes": acme.cache_max_entry_bytes, "cache_max_total_bytes": acme.cache_max_total_bytes,
            **{f"{inline}-{count}_FORMS": "0" for inline in ("seats", "budgets")
                                         for count in ("TOTAL", "INITIAL")}}
    _post(operator, _change("billing_account", acme.pk), form)
    settings, branding = _only_entry("account.updated"), _only_entry("account.branding_changed")
    assert (settings.before, settings.after) == ({"name": "Acme Inc"}, {"name": "Acme Corp"})
    assert (branding.before, branding.after) == ({"brand_name": ""}, {"brand_name": "Acme AI"})
    _assert_by_operator(settings, superuser)


def test_account_inlines_only_list(operator: Client, acme, bob) -> None:
    page = operator.get(_change("billing_account", acme.pk)).content.decode()
    assert "bob@acme.test" in page and 'name="seats-0-role"' not in page
    seat = Seat.objects.get(user=bob)
    form = {"name": acme.name, "plan": acme.plan.pk, "timezone": "UTC",
            "on_redis_unavailable": acme.on_redis_unavailable,
            "seats-TOTAL_FORMS": "1", "seats-INITIAL_FORMS": "1", "seats-0-id": seat.pk, "seats-0-account": acme.pk,
            "seats-0-role": "owner", "budgets-TOTAL_FORMS": "0", "budgets-INITIAL_FORMS": "0"}
    operator.post(_change("billing_account", acme.pk), form)
    assert Seat.objects.get(pk=seat.pk).role == "member"


def test_price_overrides_are_audited(operator: Client, superuser, acme) -> None:
    prices = {"input_per_mtok": "1.5", "output_per_mtok": "6", "cached_input_per_mtok": "",
              "cache_write_per_mtok": ""}
    _post(operator, _add("billing_priceoverride"), {"account": acme.pk, "provider": "openai", "model": "gpt-4o",
                                                    **prices})
    price = PriceOverride.objects.get()
    _post(operator, _change("billing_priceoverride", price.pk), {**prices, "output_per_mtok": "7"})
    operator.post(reverse("admin:billing_priceoverride_delete", args=[price.pk]), {"post": "yes"})
    actions = list(AuditEntry.objects.order_by("id").values_list("action", "target"))
    assert actions == [("price.created", "openai/gpt-4o"), ("price.updated", "openai/gpt-4o"),
                       ("price.deleted", "openai/gpt-4o")]
    updated = AuditEntry.objects.get(action="price.updated")
    assert (updated.before, updated.after) == ({"output_per_mtok": "6.000000"}, {"output_per_mtok": "7.000000"})
    _assert_by_operator(updated, superuser)
    assert not PriceOverride.objects.exists()


def test_revoking_a_management_token_is_audited_without_its_hash(operator: Client, superuser, acme) -> None:
    token, _ = management_token_create(account=acme, actor=Actor.of_system("tests"), name="ci-token")
    operator.post(reverse("admin:billing_managementtoken_changelist"),
                  {"action": "revoke", admin.helpers.ACTION_CHECKBOX_NAME: [token.pk]})
    token.refresh_from_db()
    entry = _only_entry("management_token.revoked")
    assert token.revoked_at is not None and entry.target == f"ci-token ({token.prefix}…)"
    assert entry.before == {"revoked_at": None} and token.token_hash not in json.dumps(entry.after)
    _assert_by_operator(entry, superuser)
    # Nothing else about a token changes in the admin: the page posts no field, and it is never deleted.
    operator.post(_change("billing_managementtoken", token.pk), {"revoked_at_0": "", "revoked_at_1": ""})
    assert ManagementToken.objects.get().revoked_at == token.revoked_at
    assert operator.post(reverse("admin:billing_managementtoken_delete", args=[token.pk]),
                         {"post": "yes"}).status_code == 403


def test_keys_are_revoked_never_deleted(operator: Client, acme) -> None:
    key = SCENARIOS["key updated"].setup(acme)
    assert operator.post(reverse("admin:proxy_apikey_delete", args=[key.pk]), {"post": "yes"}).status_code == 403
    assert ApiKey.objects.filter(pk=key.pk).exists()


def test_a_blank_list_field_is_saved_as_an_empty_list(operator: Client, acme) -> None:
    _post(operator, _add("billing_budget"), {"account": acme.pk, "limit_usd": "5", **BUDGET_FORM, "alert_at": ""})
    _post(operator, _add("alerts_alertchannel"), {"account": acme.pk, "name": "hooks", "kind": "webhook",
                                                  "url": "https://hooks.acme.test/tk", "emails": ""})
    assert Budget.objects.get().alert_at == [] and AlertChannel.objects.get().emails == []
    assert AuditEntry.objects.get(action="budget.created").after["alert_at"] == []


def test_the_plans_alert_rule_limit_is_shown_on_the_form(operator: Client, acme) -> None:
    acme.plan.max_alert_rules = 0
    acme.plan.save()
    response = operator.post(_add("alerts_alertrule"), {
        "account": acme.pk, "kind": "burn_rate", "scope": "tenant", "match": "*", "window_minutes": "15",
        "multiplier": "5", "floor_usd": "1"})
    assert response.status_code == 200 and "plan allows 0 alert rules" in response.content.decode()
    assert not AuditEntry.objects.exists()
