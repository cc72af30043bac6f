"""Alert channels and rules in the web app: per-kind fields, Slack URLs, the secret shown once after a
redirect, delete after a confirm step, disable/enable, plain-language delivery errors, and viewers' limits."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from alerts.events import alert_event_create
from alerts.models import AlertChannel, AlertDelivery, AlertEvent, AlertRule
from billing.models import AuditEntry

pytestmark = pytest.mark.django_db

SLACK = "https://hooks.slack.com/services/T000/B000/XOXBSECRETTOKEN0123456789"


def test_webhook_channel_shows_its_secret_once_with_a_copy_button_and_a_refresh_adds_nothing(client_as, alice,
                                                                                            acme) -> None:
    client = client_as(alice)
    posted = client.post(reverse("alert_channel_create", args=["acme"]),
                         {"name": "hook", "kind": "webhook", "url": "https://hooks.example.com/x"})
    assert posted.status_code == 302 and posted["Location"] == reverse("alert_settings", args=["acme"])
    page = client.get(posted["Location"]).content.decode()
    secret = page.split('id="new-webhook-secret-value">')[1].split("<")[0]
    assert AlertChannel.objects.get(account=acme, name="hook").get_secret() == secret
    assert 'data-copy="new-webhook-secret-value"' in page
    again = client.get(posted["Location"]).content.decode()
    assert secret not in again
    assert AlertChannel.objects.filter(account=acme).count() == 1


def test_slack_channels_take_only_slack_webhook_urls(client_as, alice, acme) -> None:
    client = client_as(alice)
    refused = client.post(reverse("alert_channel_create", args=["acme"]),
                          {"name": "chat", "kind": "slack", "url": "https://example.com/services/x"})
    assert refused.status_code == 400 and "not a Slack incoming-webhook URL" in refused.content.decode()
    accepted = client.post(reverse("alert_channel_create", args=["acme"]),
                           {"name": "chat", "kind": "slack", "url": SLACK})
    assert accepted.status_code == 302 and AlertChannel.objects.get(account=acme).destination_url() == SLACK


def test_channel_form_marks_each_field_with_its_kinds_and_drops_other_kinds_fields(client_as, alice, acme) -> None:
    client = client_as(alice)
    page = client.get(reverse("alert_settings", args=["acme"])).content.decode()
    form = page.split('id="channel-form"')[1].split("</form>")[0]
    assert 'data-kinds="webhook slack"' in form and 'data-kinds="email"' in form and 'data-kinds="webhook"' in form
    # An email channel whose (hidden) url field still holds what was typed before the kind changed.
    posted = client.post(reverse("alert_channel_create", args=["acme"]),
                         {"name": "mail", "kind": "email", "emails": "ops@acme.test", "url": "https://x.example.com"})
    assert posted.status_code == 302
    assert AlertChannel.objects.get(account=acme).url == ""


def test_delete_channel_and_rule_ask_first_then_delete_and_audit(client_as, alice, acme) -> None:
    client = client_as(alice)
    channel = AlertChannel.objects.create(account=acme, name="hook", kind="webhook", url="https://h.example.com")
    rule = AlertRule.objects.create(account=acme, scope="feature", match="*")
    for name, obj in (("alert_channel_delete", channel), ("alert_rule_delete", rule)):
        url = reverse(name, args=["acme", obj.pk])
        confirm = client.get(url).content.decode()
        assert f'action="{url}"' in confirm and type(obj).objects.filter(pk=obj.pk).exists()
        assert client.post(url).status_code == 302
        assert not type(obj).objects.filter(pk=obj.pk).exists()
    assert {"alert_channel.deleted", "alert_rule.deleted"} <= set(AuditEntry.objects.values_list("action", flat=True))


def test_a_disabled_channel_is_sent_nothing_and_a_disabled_rule_shows_as_such(client_as, alice, acme) -> None:
    client = client_as(alice)
    on = AlertChannel.objects.create(account=acme, name="on", kind="webhook", url="https://h.example.com/on")
    off = AlertChannel.objects.create(account=acme, name="off", kind="webhook", url="https://h.example.com/off")
    rule = AlertRule.objects.create(account=acme, scope="feature", match="*")
    assert client.post(reverse("alert_channel_enable", args=["acme", off.pk]), {"enabled": "0"}).status_code == 302
    assert client.post(reverse("alert_rule_enable", args=["acme", rule.pk]), {"enabled": "0"}).status_code == 302
    off.refresh_from_db()
    rule.refresh_from_db()
    assert not off.enabled and not rule.enabled
    event = alert_event_create(account_id=acme.pk, event_type=AlertEvent.Type.TEST, dedupe_key="t1", data={})
    assert event is not None and list(event.channels.all()) == [on]
    page = client.get(reverse("alert_settings", args=["acme"])).content.decode()
    assert "disabled" in page.split(f'id="rule-{rule.pk}"')[1].split("</tr>")[0]
    client.post(reverse("alert_channel_enable", args=["acme", off.pk]), {"enabled": "1"})
    off.refresh_from_db()
    assert off.enabled
    assert AuditEntry.objects.filter(action="alert_channel.updated", target="off").count() == 2


def test_failed_delivery_reads_plainly_with_the_raw_error_behind_a_disclosure(client_as, alice, acme) -> None:
    channel = AlertChannel.objects.create(account=acme, name="mail", kind="email", emails=["a@acme.test"])
    event = AlertEvent.objects.create(account=acme, type=AlertEvent.Type.TEST, dedupe_key="x", webhook_id="msg_1",
                                      payload={})
    AlertDelivery.objects.create(event=event, channel=channel, attempt=1, succeeded=False,
                                 error="ConnectionRefusedError: [Errno 111] Connection refused")
    page = client_as(alice).get(reverse("alert_settings", args=["acme"])).content.decode()
    assert "the mail server refused the connection" in page
    details = page.split("<details")[1].split("</details>")[0]
    assert "ConnectionRefusedError: [Errno 111] Connection refused" in details


def test_viewers_cannot_add_delete_or_disable_channels_and_rules(client_as, dave, acme) -> None:
    client = client_as(dave)
    channel = AlertChannel.objects.create(account=acme, name="hook", kind="webhook", url="https://h.example.com")
    rule = AlertRule.objects.create(account=acme, scope="feature", match="*", multiplier=Decimal(3))
    page = client.get(reverse("alert_settings", args=["acme"])).content.decode()
    assert reverse("alert_channel_delete", args=["acme", channel.pk]) not in page
    for name, pk in (("alert_channel_delete", channel.pk), ("alert_rule_delete", rule.pk),
                     ("alert_channel_edit", channel.pk), ("alert_rule_edit", rule.pk)):
        assert client.get(reverse(name, args=["acme", pk])).status_code == 403
        assert client.post(reverse(name, args=["acme", pk])).status_code == 403
    for name, pk in (("alert_channel_enable", channel.pk), ("alert_rule_enable", rule.pk)):
        assert client.post(reverse(name, args=["acme", pk]), {"enabled": "0"}).status_code == 403
    assert client.post(reverse("alert_channel_create", args=["acme"]),
                       {"name": "x", "kind": "webhook", "url": "https://h.example.com"}).status_code == 403
    channel.refresh_from_db()
    rule.refresh_from_db()
    assert channel.enabled and rule.enabled and AlertChannel.objects.count() == 1


def test_edit_a_channel_and_a_rule(client_as, alice, acme) -> None:
    client = client_as(alice)
    client.post(reverse("alert_channel_create", args=["acme"]), {"name": "chat", "kind": "slack", "url": SLACK})
    channel = AlertChannel.objects.get(account=acme)
    url = reverse("alert_channel_edit", args=["acme", channel.pk])
    form = client.get(url).content.decode()
    assert "XOXBSECRET" not in form and 'value="chat"' in form
    # The masked URL sent back unchanged keeps the real one; the name changes.
    assert client.post(url, {"name": "ops-chat", "kind": "webhook", "url": channel.url}).status_code == 302
    channel.refresh_from_db()
    assert channel.name == "ops-chat" and channel.kind == "slack" and channel.destination_url() == SLACK
    refused = client.post(url, {"name": "ops-chat", "url": "https://example.com/x"})
    assert refused.status_code == 400 and "not a Slack incoming-webhook URL" in refused.content.decode()
    rule = AlertRule.objects.create(account=acme, scope="feature", match="*")
    rule_url = reverse("alert_rule_edit", args=["acme", rule.pk])
    assert 'value="15"' in client.get(rule_url).content.decode()
    saved = client.post(rule_url, {"scope": "tenant", "match": "*", "window_minutes": "30", "multiplier": "3",
                                   "floor_usd": "2"})
    assert saved.status_code == 302
    rule.refresh_from_db()
    assert (rule.scope, rule.window_minutes, rule.multiplier) == ("tenant", 30, Decimal("3"))
    actions = set(AuditEntry.objects.filter(actor=alice).values_list("action", flat=True))
    assert {"alert_channel.updated", "alert_rule.updated"} <= actions


def test_channel_form_subscribes_to_event_types_and_the_log_filters_by_type(client_as, alice, acme) -> None:
    import re

    from alerts.models import BUDGET_ALERT_TYPES, OPT_IN_TYPES

    client = client_as(alice)
    page = client.get(reverse("alert_settings", args=["acme"])).content.decode()
    form = page.split('id="channel-form"')[1].split("</form>")[0]
    boxes = {m.group(1): "checked" in m.group(0)
             for m in re.finditer(r'<input type="checkbox" name="event_types" value="([^"]+)"[^>]*>', form)}
    assert boxes == {**{t: False for t in OPT_IN_TYPES}, **{t: True for t in BUDGET_ALERT_TYPES}}
    posted = client.post(reverse("alert_channel_create", args=["acme"]),
                         {"name": "hook", "kind": "webhook", "url": "https://hooks.example.com/x",
                          "event_types": ["budget.exhausted", "key.created", "budget.denied"]})
    assert posted.status_code == 302
    channel = AlertChannel.objects.get(name="hook")
    assert channel.event_types == ["budget.exhausted", "key.created", "budget.denied"]
    legacy = client.post(reverse("alert_channel_create", args=["acme"]),
                         {"name": "old", "kind": "webhook", "url": "https://hooks.example.com/y"})
    assert legacy.status_code == 302
    assert AlertChannel.objects.get(name="old").event_types == list(BUDGET_ALERT_TYPES)
    edited = client.post(reverse("alert_channel_edit", args=["acme", channel.pk]),
                         {"name": "hook", "url": "https://hooks.example.com/x", "event_types": ["key.expiring"]})
    assert edited.status_code == 302
    channel.refresh_from_db()
    assert channel.event_types == ["key.expiring"]
    refused = client.post(reverse("alert_channel_edit", args=["acme", channel.pk]),
                          {"name": "hook", "url": "https://hooks.example.com/x", "event_types": ["key.leaked"]})
    assert refused.status_code == 400 and channel.event_types == ["key.expiring"]

    for kind, key in (("key.created", "k1"), ("rate_limit.exceeded", "k2"), ("budget.exhausted", "b1")):
        alert_event_create(account_id=acme.pk, event_type=kind, dedupe_key=f"t:{key}", data={"account": "acme"})
    page = client.get(reverse("alert_settings", args=["acme"])).content.decode()
    log = page.split("Recent alerts")[1]
    assert "rate_limit.exceeded</td>" in log and "key.created</td>" in log and "budget.exhausted</td>" in log
    assert '<option value="budget.denied">' in log
    filtered = client.get(reverse("alert_settings", args=["acme"]), {"type": "rate_limit.exceeded"}).content.decode()
    log = filtered.split("Recent alerts")[1]
    assert "rate_limit.exceeded</td>" in log and "key.created</td>" not in log and "budget.exhausted</td>" not in log
    assert '<option value="rate_limit.exceeded" selected>' in log
    unknown = client.get(reverse("alert_settings", args=["acme"]), {"type": "<script>"}).content.decode()
    log = unknown.split("Recent alerts")[1]  # an unknown type filters nothing, and is not echoed
    assert "key.created</td>" in log and "rate_limit.exceeded</td>" in log and "&lt;script&gt;" not in log
    channels = page.split("Recent alerts")[0]

    def row(name: str) -> str:
        return channels.split(f'<tr id="channel-{AlertChannel.objects.get(name=name).pk}">')[1].split("</tr>")[0]

    assert row("hook").count('<span class="pill">') == 2  # its kind, and the one event type it takes
    assert '<span class="pill">key.expiring</span>' in row("hook")
    assert '<span class="pill">budget alerts</span>' in row("old")
