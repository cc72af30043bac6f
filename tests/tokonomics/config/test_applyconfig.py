"""applyconfig (CONTRACT §5): idempotent, all-or-nothing, secrets never printed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from alerts.models import AlertChannel, masked_url
from billing.models import Account, AuditEntry, Budget, PriceOverride, Seat
from proxy.keys import hash_key
from proxy.models import ApiKey, ProviderEndpoint

pytestmark = pytest.mark.django_db

FIXED_KEY = "mk_test_0123456789abcdef0123456789ab"

EXAMPLE = """
accounts:
  - slug: acme
    name: Acme Inc
    plan: pro
    timezone: UTC
    providers:
      - slug: openai
        kind: openai
        base_url: https://api.openai.com/v1
        api_key_env: OPENAI_API_KEY
    seats:
      - {email: alice@acme.test, role: owner, password_env: ALICE_PASSWORD}
    keys:
      - name: ci
        key: mk_test_0123456789abcdef0123456789ab
        environment: production
        allowed_models: ["gpt-4o-mini", "claude-*"]
        expires_at: 2027-01-01T00:00:00Z
    budgets:
      - {scope: account, period: month, limit_usd: 500, hard: true, alert_at: [50, 75, 90, 100]}
      - {scope: tenant, match: "*", period: month, limit_usd: 5, hard: true}
      - {scope: feature, match: support-bot, period: day, limit_usd: 20, hard: false}
    alert_channels:
      - {kind: webhook, url: "https://hooks.example.com/x", secret_env: HOOK_SECRET}
      - {kind: email, to: ["ops@acme.test"]}
    prices:
      - {provider: openai, model: my-finetune, input_per_mtok: 3.0, output_per_mtok: 12.0}
"""

ENV = {
    "OPENAI_API_KEY": "sk-proj-SECRET-openai-credential",
    "ALICE_PASSWORD": "alice's long password",
    "HOOK_SECRET": "whsec_c2VjcmV0LWhvb2stYnl0ZXM=",
}


@pytest.fixture
def env(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def apply(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    out = io.StringIO()
    call_command("applyconfig", str(path), stdout=out)
    return out.getvalue()


def apply_data(tmp_path: Path, data: dict) -> str:
    return apply(tmp_path, yaml.safe_dump(data))


def example() -> dict:
    return yaml.safe_load(EXAMPLE)


def test_contract_example_applies_everything(tmp_path, env) -> None:
    output = apply(tmp_path, EXAMPLE)
    acme = Account.objects.get(slug="acme")
    assert acme.plan.slug == "pro"
    endpoint = ProviderEndpoint.objects.get(account=acme, slug="openai")
    assert endpoint.wire_format == "openai" and endpoint.base_url == "https://api.openai.com/v1"
    assert endpoint.get_credential() == ENV["OPENAI_API_KEY"]
    seat = Seat.objects.get(account=acme)
    assert seat.role == "owner" and seat.user.check_password(ENV["ALICE_PASSWORD"])
    key = ApiKey.objects.get(account=acme, name="ci")
    assert key.key_hash == hash_key(FIXED_KEY) and key.allowed_models == ["gpt-4o-mini", "claude-*"]
    assert key.expires_at.isoformat() == "2027-01-01T00:00:00+00:00"
    assert Budget.objects.filter(account=acme).count() == 3
    tenant = Budget.objects.get(account=acme, scope="tenant")
    assert tenant.match == "*" and tenant.hard and tenant.alert_at == [50, 75, 90, 100]
    assert not Budget.objects.get(account=acme, scope="feature").hard
    webhook = AlertChannel.objects.get(account=acme, kind="webhook")
    assert webhook.get_secret() == ENV["HOOK_SECRET"]
    assert AlertChannel.objects.get(account=acme, kind="email").emails == ["ops@acme.test"]
    assert PriceOverride.objects.get(account=acme, model="my-finetune").output_per_mtok == 12
    for secret in ENV.values():
        assert secret not in output
    assert FIXED_KEY not in output  # a key given in the file is not "new": never printed


def test_second_run_reports_no_changes(tmp_path, env) -> None:
    apply(tmp_path, EXAMPLE)
    assert apply(tmp_path, EXAMPLE).strip() == "No changes."


def test_a_change_is_reported_and_applied(tmp_path, env) -> None:
    apply(tmp_path, EXAMPLE)
    data = example()
    data["accounts"][0]["budgets"][0]["limit_usd"] = 750
    output = apply_data(tmp_path, data)
    assert "acme: updated limit_usd budget account/month" in output
    assert Budget.objects.get(scope="account").limit_usd == 750


def test_an_account_may_allow_unpriced_models(tmp_path, env) -> None:
    apply(tmp_path, EXAMPLE)
    assert Account.objects.get(slug="acme").allow_unpriced_models is False
    data = example()
    data["accounts"][0]["allow_unpriced_models"] = True
    assert "acme: updated allow_unpriced_models account" in apply_data(tmp_path, data)
    assert Account.objects.get(slug="acme").allow_unpriced_models is True


def test_generated_key_is_printed_once(tmp_path, env) -> None:
    data = example()
    data["accounts"][0]["keys"].append({"name": "generated"})
    first = apply_data(tmp_path, data)
    line = next(line for line in first.splitlines() if "acme/generated" in line)
    plaintext = line.rsplit(" ", 1)[1]
    assert ApiKey.objects.get(name="generated").key_hash == hash_key(plaintext)
    second = apply_data(tmp_path, data)
    assert second.strip() == "No changes."
    assert ApiKey.objects.get(name="generated").key_hash == hash_key(plaintext)


def test_a_new_key_in_the_file_replaces_the_old_one_and_only_its_prefix_is_logged(tmp_path, env) -> None:
    apply(tmp_path, EXAMPLE)
    data = example()
    new_key = "mk_test_new_9876543210fedcba9876543210"
    data["accounts"][0]["keys"][0]["key"] = new_key
    output = apply_data(tmp_path, data)
    assert "acme: updated key key ci" in output and new_key not in output
    assert ApiKey.objects.get(name="ci").key_hash == hash_key(new_key)
    entry = AuditEntry.objects.get(action="key.replaced")
    assert entry.before == {"prefix": FIXED_KEY[:11]} and entry.after == {"prefix": new_key[:11]}
    assert entry.actor_kind == "config" and entry.actor_label == "config:config.yaml"
    assert apply_data(tmp_path, data).strip() == "No changes."


def test_rotated_credential_is_an_update_and_never_printed(tmp_path, env, monkeypatch) -> None:
    apply(tmp_path, EXAMPLE)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-ROTATED")
    output = apply(tmp_path, EXAMPLE)
    assert "updated credential of provider openai" in output
    assert "ROTATED" not in output
    assert ProviderEndpoint.objects.get(slug="openai").get_credential() == "sk-proj-ROTATED"


def test_webhook_without_secret_gets_a_generated_one(tmp_path, env) -> None:
    data = example()
    data["accounts"][0]["alert_channels"] = [{"kind": "webhook", "url": "https://hooks.example.com/y"}]
    apply_data(tmp_path, data)
    secret = AlertChannel.objects.get(kind="webhook").get_secret()
    assert secret.startswith("whsec_")
    assert apply_data(tmp_path, data).strip() == "No changes."
    assert AlertChannel.objects.get(kind="webhook").get_secret() == secret


def rejected(tmp_path: Path, data: object) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    with pytest.raises(CommandError) as caught:
        call_command("applyconfig", str(path), stdout=io.StringIO())
    return str(caught.value)


def mutate(path: list, value: object, *, delete: bool = False) -> dict:
    data = example()
    node = data
    for step in path[:-1]:
        node = node[step]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


BAD_CASES = [
    (["accounts", 0, "plan"], "platinum", "accounts[0] (acme).plan: unknown plan 'platinum'"),
    (["accounts", 0, "timezone"], "Mars/Olympus", "timezone: 'Mars/Olympus' is not an IANA time zone"),
    (["accounts", 0, "slug"], "Acme Inc", "accounts[0] (Acme Inc).slug: String should match pattern"),
    (["accounts", 0, "keys", 0, "key"], "mk_short", "keys[0] (ci).key"),
    (["accounts", 0, "keys", 0, "expires_at"], "next tuesday", "keys[0] (ci).expires_at"),
    (["accounts", 0, "keys", 0, "colour"], "blue", "keys[0] (ci).colour: Extra inputs are not permitted"),
    (["accounts", 0, "budgets", 0, "period"], "fortnight", "budgets[0].period"),
    (["accounts", 0, "budgets", 0, "limit_usd"], -5, "budgets[0].limit_usd"),
    (["accounts", 0, "budgets", 0, "scope"], "planet", "budgets[0].scope"),
    (["accounts", 0, "budgets", 1, "match"], "", "a tenant budget needs match"),
    (["accounts", 0, "budgets", 0, "alert_at"], [0, 150], "thresholds are whole percentages"),
    (["accounts", 0, "budgets", 0, "channels"], ["nope"], "budgets[0].channels: no alert channel named 'nope'"),
    (["accounts", 0, "providers", 0, "api_key_env"], "MISSING_ENV", "environment variable MISSING_ENV is not set"),
    (["accounts", 0, "providers", 0, "kind"], "grpc", "providers[0] (openai).kind"),
    (["accounts", 0, "providers", 0, "base_url"], "not a url", "is not a valid http(s) URL"),
    (["accounts", 0, "seats", 0, "email"], "alice", "seats[0]"),
    (["accounts", 0, "seats", 0, "role"], "emperor", "seats[0] (alice@acme.test).role"),
    (["accounts", 0, "seats", 0, "password_env"], "NOPE_ENV", "environment variable NOPE_ENV is not set"),
    (["accounts", 0, "alert_channels", 0, "url"], None, "a webhook channel needs url"),
    (["accounts", 0, "alert_channels", 1, "to"], None, "an email channel needs to"),
    (["accounts", 0, "prices", 0, "provider"], "anthropic", "prices[0].provider: no provider 'anthropic'"),
    (["accounts", 0, "prices", 0, "input_per_mtok"], 10**20, "prices[0].input_per_mtok"),
    (["accounts", 0, "keys", 0, "requests_per_minute"], 2**31, "keys[0] (ci).requests_per_minute"),
    (["accounts", 0, "retention_days"], 10**9, "accounts[0] (acme).retention_days"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD_CASES, ids=[c[2][:40] for c in BAD_CASES])
def test_invalid_file_is_rejected_whole_naming_the_field(tmp_path, env, path, value, message) -> None:
    error = rejected(tmp_path, mutate(path, value))
    assert message in error
    assert "nothing changed" in error
    assert not Account.objects.filter(slug="acme").exists()


def test_custom_provider_needs_kind_and_base_url(tmp_path, env) -> None:
    data = mutate(["accounts", 0, "providers"], [{"slug": "vllm-internal", "api_key": "x"}])
    error = rejected(tmp_path, data)
    assert "providers[0] (vllm-internal).kind: required for a custom provider" in error
    assert "providers[0] (vllm-internal).base_url: required for a custom provider" in error


def test_builtin_provider_defaults_its_url(tmp_path, env) -> None:
    data = mutate(["accounts", 0, "providers"], [{"slug": "anthropic", "api_key": "sk-ant"}])
    del data["accounts"][0]["prices"]
    apply_data(tmp_path, data)
    endpoint = ProviderEndpoint.objects.get(slug="anthropic")
    assert (endpoint.wire_format, endpoint.base_url) == ("anthropic", "https://api.anthropic.com")


def test_price_typed_per_token_is_rejected(tmp_path, env) -> None:
    data = mutate(["accounts", 0, "prices", 0, "input_per_mtok"], 0.000003)
    assert "input_per_mtok" in rejected(tmp_path, data)


def test_error_in_second_account_leaves_first_untouched(tmp_path, env) -> None:
    data = example()
    data["accounts"].append({"slug": "globex", "name": "Globex", "plan": "nope"})
    assert "accounts[1] (globex).plan" in rejected(tmp_path, data)
    assert not Account.objects.exists()


def test_duplicate_names_are_rejected(tmp_path, env) -> None:
    data = example()
    data["accounts"][0]["keys"].append(dict(data["accounts"][0]["keys"][0]))
    assert "keys: 'ci' appears 2 times" in rejected(tmp_path, data)


def test_key_used_by_another_account_is_rejected(tmp_path, env) -> None:
    apply(tmp_path, EXAMPLE)
    data = example()
    data["accounts"][0]["slug"] = "other"
    assert "already in use by another key" in rejected(tmp_path, data)


def test_not_yaml_and_not_a_mapping(tmp_path) -> None:
    assert "not valid YAML" in rejected(tmp_path, "accounts: [unclosed")
    assert "top-level `accounts:` list" in rejected(tmp_path, "- just a list")
    assert "accounts: Field required" in rejected(tmp_path, "{}")


def test_missing_file() -> None:
    with pytest.raises(CommandError, match="cannot read"):
        call_command("applyconfig", "/nonexistent/config.yaml")


def test_check_mode_writes_nothing(tmp_path, env) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(EXAMPLE)
    out = io.StringIO()
    call_command("applyconfig", str(path), "--check", stdout=out)
    assert "is valid" in out.getvalue()
    assert not Account.objects.exists()


def test_plan_limits_on_seats_and_alert_rules(tmp_path, env) -> None:
    data = example()
    data["accounts"][0]["plan"] = "starter"
    data["accounts"][0]["seats"].append({"email": "bob@acme.test", "role": "member"})
    data["accounts"][0]["alert_rules"] = [{"scope": s, "match": "*"} for s in ("feature", "tenant", "key", "account")]
    error = rejected(tmp_path, data)
    assert "seats: the Starter plan has 1 seat(s), this account would have 2" in error
    assert "alert_rules: the Starter plan allows 3 alert rules, this account would have 4" in error


SLACK_URL = "https://hooks.slack.com/services/T000/B000/XOXBSECRETTOKEN0123456789"


@pytest.mark.parametrize(("first", "then"), [
    ({"kind": "slack", "url": SLACK_URL}, {"kind": "webhook", "url": "https://hooks.example.com/new"}),
    ({"kind": "webhook", "url": SLACK_URL}, {"kind": "slack", "url": SLACK_URL}),
])
def test_changing_a_channels_kind_stores_its_url_for_the_new_kind(tmp_path, env, first, then) -> None:
    data = example()
    data["accounts"][0]["alert_channels"] = [{"name": "chat", **first}]
    apply_data(tmp_path, data)
    data["accounts"][0]["alert_channels"] = [{"name": "chat", **then}]
    assert "alert channel chat" in apply_data(tmp_path, data)
    channel = AlertChannel.objects.get(name="chat")
    assert channel.kind == then["kind"] and channel.destination_url() == then["url"]
    assert bool(channel.url_encrypted) == (then["kind"] == "slack")
    assert channel.url == (masked_url(then["url"]) if then["kind"] == "slack" else then["url"])
    assert apply_data(tmp_path, data).strip() == "No changes."


def test_an_azure_endpoint_with_its_deployments(tmp_path, env) -> None:
    data = example()
    data["accounts"][0]["providers"].append(
        {"slug": "azure", "kind": "azure-openai", "base_url": "https://acme.openai.azure.com", "api_key": "az-key",
         "deployments": {"prod-chat": "gpt-4o-mini"}})
    apply_data(tmp_path, data)
    endpoint = ProviderEndpoint.objects.get(slug="azure")
    assert (endpoint.wire_format, endpoint.pricing_provider) == ("azure-openai", "azure")
    assert endpoint.deployments == {"prod-chat": "gpt-4o-mini"} and endpoint.get_credential() == "az-key"
    data["accounts"][0]["providers"][-1]["deployments"] = {"prod-chat": "gpt-4o"}
    assert "updated deployments provider azure" in apply_data(tmp_path, data)
    endpoint.refresh_from_db()
    assert endpoint.deployments == {"prod-chat": "gpt-4o"}
    # Left out of the file, the mapping stays as it is.
    del data["accounts"][0]["providers"][-1]["deployments"]
    apply_data(tmp_path, data)
    endpoint.refresh_from_db()
    assert endpoint.deployments == {"prod-chat": "gpt-4o"}


def test_bad_deployments_are_refused_naming_the_field(tmp_path, env) -> None:
    data = example()
    data["accounts"][0]["providers"].append(
        {"slug": "azure", "kind": "azure-openai", "base_url": "https://acme.openai.azure.com",
         "deployments": {"a/b": "gpt-4o"}})
    with pytest.raises(CommandError, match="deployments"):
        apply_data(tmp_path, data)
    assert not ProviderEndpoint.objects.filter(slug="azure").exists()


def test_channel_event_types_apply_and_are_audited(tmp_path, env) -> None:
    data = example()
    data["accounts"][0]["alert_channels"] = [{"name": "hooks", "kind": "webhook", "url": "https://hooks.example.com/x",
                                              "event_types": ["key.created", "budget.denied"]}]
    apply_data(tmp_path, data)
    assert AlertChannel.objects.get(name="hooks").event_types == ["key.created", "budget.denied"]
    assert apply_data(tmp_path, data).strip() == "No changes."
    del data["accounts"][0]["alert_channels"][0]["event_types"]  # left out: the channel keeps its choice
    assert apply_data(tmp_path, data).strip() == "No changes."
    data["accounts"][0]["alert_channels"][0]["event_types"] = ["budget.exhausted", "rate_limit.exceeded"]
    assert "event_types" in apply_data(tmp_path, data)
    assert AlertChannel.objects.get(name="hooks").event_types == ["budget.exhausted", "rate_limit.exceeded"]
    entry = AuditEntry.objects.filter(action="alert_channel.updated").latest("pk")
    assert entry.after["event_types"] == ["budget.exhausted", "rate_limit.exceeded"]
    data["accounts"][0]["alert_channels"][0]["event_types"] = ["key.leaked"]
    assert "event_types" in rejected(tmp_path, data)


def test_an_account_may_turn_its_response_cache_on(tmp_path, env) -> None:
    apply(tmp_path, EXAMPLE)
    assert Account.objects.get(slug="acme").cache_enabled is False
    data = example()
    data["accounts"][0]["cache"] = {"enabled": True, "ttl_seconds": 300, "nonzero_temperature": True}
    output = apply_data(tmp_path, data)
    assert "acme: updated cache_enabled, cache_ttl_seconds, cache_nonzero_temperature account" in output
    acme = Account.objects.get(slug="acme")
    assert (acme.cache_enabled, acme.cache_ttl_seconds, acme.cache_nonzero_temperature) == (True, 300, True)
    assert AuditEntry.objects.filter(action="account.cache_changed").count() == 1
    assert "acme: updated" not in apply_data(tmp_path, data)  # applied again: nothing changes
    data["accounts"][0]["cache"] = {"enabled": True, "ttl_seconds": 0}
    with pytest.raises(CommandError):
        apply_data(tmp_path, data)
