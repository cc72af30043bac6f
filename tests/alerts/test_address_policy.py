"""Webhook and Slack deliveries with private URLs off: the address is checked when connecting, so a name
that answered with a public address when the channel was saved cannot deliver to 127.0.0.1 later."""

from __future__ import annotations

import pytest

from alerts.models import AlertEvent
from alerts.notifiers import NOTIFIERS
from alerts.services import alert_channel_create
from tokonomics.audit import Actor

from ..rebinding_dns import REBINDING_HOST, RebindingResolver, rebinding_dns

OPERATOR = Actor.of_system("test")

__all__ = ["rebinding_dns"]

pytestmark = pytest.mark.django_db


def _event(account) -> AlertEvent:
    return AlertEvent(account=account, type="test", dedupe_key="t", webhook_id="msg_test",
                      payload={"type": "test", "timestamp": "2026-01-01T00:00:00+00:00", "data": {}})


@pytest.mark.parametrize(("kind", "receiver_fixture"), [("webhook", "receiver"), ("slack", "slack_receiver")])
def test_rebinding_name_gets_no_delivery(acme, settings, rebinding_dns: RebindingResolver, request,
                                         kind: str, receiver_fixture: str) -> None:
    settings.TOKONOMICS_ALLOW_PRIVATE_URLS = False
    receiver = request.getfixturevalue(receiver_fixture)
    url = receiver.url.replace("127.0.0.1", f"{kind}.{REBINDING_HOST}")
    channel, _ = alert_channel_create(account=acme, actor=OPERATOR, name="hooks", kind=kind, url=url)
    assert rebinding_dns.answers[f"{kind}.{REBINDING_HOST}"] == ["93.184.215.14"]

    result = NOTIFIERS[kind].send(channel=channel, event=_event(acme))

    assert not result.succeeded
    assert "127.0.0.1" in result.error and "private" in result.error
    assert receiver.deliveries == []


def test_private_receivers_get_deliveries_when_allowed(acme, receiver) -> None:
    channel, _ = alert_channel_create(account=acme, actor=OPERATOR, name="hooks", kind="webhook", url=receiver.url)
    NOTIFIERS["webhook"].send(channel=channel, event=_event(acme))
    assert len(receiver.deliveries) == 1
