"""The alerts page and the audit log never show a Slack channel's URL, to its creator or a viewer (issue 13)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from alerts.models import AlertChannel
from billing.models import AuditEntry

pytestmark = pytest.mark.django_db

URL = "https://hooks.slack.com/services/T000/B000/XOXBSECRETTOKEN0123456789"


def test_slack_url_is_masked_on_the_page_and_in_the_audit_log(client_as, alice, dave, acme) -> None:
    owner = client_as(alice)
    owner.post(reverse("alert_channel_create", args=["acme"]), {"name": "chat", "kind": "slack", "url": URL})
    assert AlertChannel.objects.get(account=acme).destination_url() == URL
    for person in (owner, client_as(dave)):
        page = person.get(reverse("alert_settings", args=["acme"])).content.decode()
        assert "hooks.slack.com/…6789" in page and "XOXBSECRET" not in page
    entry = AuditEntry.objects.get(action="alert_channel.created")
    assert "XOXBSECRET" not in str(entry.after) and "XOXBSECRET" not in str(entry.before)
