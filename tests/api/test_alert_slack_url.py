"""A Slack channel's URL is write-only over the API: masked in every answer (issue 13)."""

from __future__ import annotations

import pytest

from alerts.models import AlertChannel

from ..support import ApiClient

pytestmark = pytest.mark.django_db

URL = "https://hooks.slack.com/services/T000/B000/XOXBSECRETTOKEN0123456789"


def test_slack_url_is_masked_in_every_answer(acme_api: ApiClient, acme_viewer_api: ApiClient) -> None:
    created = acme_api.post("alert-channels", {"name": "chat", "kind": "slack", "url": URL})
    assert created.status_code == 201
    assert created.json()["url"] == "https://hooks.slack.com/…6789"
    channel_id = created.json()["id"]
    answers = [created, acme_api.get("alert-channels"), acme_api.get(f"alert-channels/{channel_id}"),
               acme_viewer_api.get("alert-channels"),
               acme_api.patch(f"alert-channels/{channel_id}", {"name": "ops-chat"})]
    for answer in answers:
        assert answer.status_code == 200 or answer is created
        assert "XOXBSECRET" not in answer.content.decode()
    assert AlertChannel.objects.get().destination_url() == URL
