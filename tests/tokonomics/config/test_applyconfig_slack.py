"""applyconfig and Slack channels (issue 13): the URL is stored encrypted, never becomes the channel's
name, and a second run still changes nothing."""

from __future__ import annotations

import pytest

from alerts.models import AlertChannel

from .test_applyconfig import apply_data, env, example

__all__ = ["env"]

pytestmark = pytest.mark.django_db

URL = "https://hooks.slack.com/services/T000/B000/XOXBSECRETTOKEN0123456789"


def test_slack_url_is_stored_encrypted_and_applies_idempotently(tmp_path, env) -> None:
    data = example()
    data["accounts"][0]["alert_channels"].append({"kind": "slack", "url": URL})
    output = apply_data(tmp_path, data)
    assert "XOXBSECRET" not in output
    channel = AlertChannel.objects.get(kind="slack")
    assert "XOXBSECRET" not in channel.name and "XOXBSECRET" not in channel.url
    assert channel.destination_url() == URL
    assert apply_data(tmp_path, data).strip() == "No changes."

    data["accounts"][0]["alert_channels"][-1] |= {"name": "chat", "url": URL + "X"}
    apply_data(tmp_path, data)
    assert AlertChannel.objects.get(name="chat").destination_url() == URL + "X"
    assert apply_data(tmp_path, data).strip() == "No changes."
