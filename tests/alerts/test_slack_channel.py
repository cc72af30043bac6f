"""Slack channels (issue 13): the incoming-webhook URL is a secret (encrypted at rest, masked everywhere it
is shown), and the message text escapes what API clients name, so a tenant cannot post links or mentions."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from alerts.models import AlertChannel, AlertEvent
from alerts.notifiers import NOTIFIERS
from alerts.services import alert_channel_create, alert_channel_update
from tokonomics.audit import Actor

OPERATOR = Actor.of_system("test")

pytestmark = pytest.mark.django_db

TOKEN = "XOXBSECRETTOKEN0123456789"


def _event(account, tenant: str = "initech") -> AlertEvent:
    return AlertEvent(account=account, type="budget.exhausted", dedupe_key="t", webhook_id="msg_test", payload={
        "type": "budget.exhausted", "timestamp": "2026-01-01T00:00:00+00:00",
        "data": {"account": "acme", "value": tenant, "spent_usd": "5", "budget": {
            "scope": "tenant", "match": "*", "period": "month", "limit_usd": "5", "hard": True}}})


def test_slack_url_is_encrypted_at_rest_and_still_delivered_to(acme, slack_receiver) -> None:
    url = f"{slack_receiver.url}/services/T000/B000/{TOKEN}"
    channel, _ = alert_channel_create(account=acme, actor=OPERATOR, name="chat", kind="slack", url=url)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM alerts_alertchannel")
        assert TOKEN not in repr(cursor.fetchall())
    channel = AlertChannel.objects.get(pk=channel.pk)
    assert TOKEN not in channel.url and channel.url.endswith(TOKEN[-4:])
    assert channel.destination_url() == url

    slack_receiver.url = url  # the receiver answers any path
    assert NOTIFIERS["slack"].send(channel=channel, event=_event(acme)).succeeded
    assert len(slack_receiver.deliveries) == 1

    renamed = alert_channel_update(account=acme, actor=OPERATOR, channel=channel, changes={"name": "ops-chat"})
    assert AlertChannel.objects.get(pk=renamed.pk).destination_url() == url


@pytest.mark.parametrize("tenant", ["<!channel>", "<https://evil.example|click here>", "<@U123> & co", "@here"])
def test_names_from_api_clients_cannot_become_links_or_mentions(acme, slack_receiver, tenant: str) -> None:
    channel, _ = alert_channel_create(account=acme, actor=OPERATOR, name="chat", kind="slack", url=slack_receiver.url)
    assert NOTIFIERS["slack"].send(channel=channel, event=_event(acme, tenant)).succeeded
    [delivery] = slack_receiver.deliveries
    text = json.loads(delivery.body)["text"]
    assert "<" not in text and ">" not in text and "@here" not in text
    assert "&lt;" in text or "@" in text
    if "&" in tenant:
        assert "&amp; co" in text


SLACK_URL = f"https://hooks.slack.com/services/T000/B000/{TOKEN}"


def test_a_channel_changed_from_slack_to_webhook_in_the_admin_forgets_the_slack_url(client, superuser, acme) -> None:
    from django.urls import reverse

    channel, _ = alert_channel_create(account=acme, actor=OPERATOR, name="chat", kind="slack", url=SLACK_URL)
    client.force_login(superuser)
    change = reverse("admin:alerts_alertchannel_change", args=[channel.pk])
    form = {"account": acme.pk, "name": "chat", "kind": "webhook", "url": channel.url, "emails": "[]"}
    kept_masked = client.post(change, form)
    assert kept_masked.status_code == 200 and "masked" in kept_masked.content.decode()  # refused: give the URL
    assert AlertChannel.objects.get(pk=channel.pk).kind == "slack"
    assert client.post(change, form | {"url": "https://hooks.example.com/new"}).status_code == 302
    channel.refresh_from_db()
    assert channel.kind == "webhook" and not channel.url_encrypted
    assert channel.destination_url() == "https://hooks.example.com/new"


def test_a_webhook_changed_to_slack_in_the_admin_encrypts_its_url(client, superuser, acme) -> None:
    from django.urls import reverse

    channel, _ = alert_channel_create(account=acme, actor=OPERATOR, name="chat", kind="webhook", url=SLACK_URL)
    client.force_login(superuser)
    change = reverse("admin:alerts_alertchannel_change", args=[channel.pk])
    form = {"account": acme.pk, "name": "chat", "kind": "slack", "url": SLACK_URL, "emails": "[]"}
    assert client.post(change, form).status_code == 302  # only the kind changed
    channel.refresh_from_db()
    assert TOKEN not in channel.url and channel.destination_url() == SLACK_URL
