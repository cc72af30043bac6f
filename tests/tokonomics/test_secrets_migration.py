"""The issue-13 data migrations: rows written before them (`v1:` ciphertexts, one associated data for
all, Slack URLs in plaintext) are re-encrypted bound to their row and still read afterwards."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from alerts.models import AlertChannel
from billing.models import SsoConfig
from proxy.models import ProviderEndpoint

BEFORE = [("proxy", "0001_initial"), ("alerts", "0003_alert_events"),
          ("billing", "0008_usage_rollups_by_day_summary_tenant")]
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXabcd"


def legacy_encrypt(plaintext: str) -> str:
    """A ciphertext as Tokonomics wrote it before issue 13."""
    nonce = os.urandom(12)
    sealed = AESGCM(settings.TOKONOMICS_ENCRYPTION_KEY).encrypt(nonce, plaintext.encode(), b"tokonomics:secret:v1")
    return "v1:" + base64.b64encode(nonce + sealed).decode()


@pytest.fixture
def old_apps(transactional_db, plans) -> Iterator:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        yield executor.loader.project_state(BEFORE).apps
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_existing_secrets_are_rebound_to_their_rows_and_still_read(old_apps, plans) -> None:
    Account = old_apps.get_model("billing", "Account")
    account = Account.objects.create(slug="acme", name="Acme", plan_id=plans["enterprise"].pk, timezone="UTC")
    other = Account.objects.create(slug="globex", name="Globex", plan_id=plans["pro"].pk, timezone="UTC")
    for owner, credential in ((account, "sk-acme-OLD"), (other, "sk-globex-OLD")):
        old_apps.get_model("proxy", "ProviderEndpoint").objects.create(
            account_id=owner.pk, slug="openai", wire_format="openai", base_url="https://api.openai.com/v1",
            credential_encrypted=legacy_encrypt(credential))
    channels = old_apps.get_model("alerts", "AlertChannel").objects
    channels.create(account_id=account.pk, name="hooks", kind="webhook", url="https://hooks.example.com/x",
                    secret_encrypted=legacy_encrypt("whsec_c2VjcmV0LWhvb2stYnl0ZXM="))
    channels.create(account_id=account.pk, name=f"slack:{SLACK_URL}", kind="slack", url=SLACK_URL)
    old_apps.get_model("billing", "SsoConfig").objects.create(
        account_id=account.pk, issuer="https://idp.example", client_id="web", allowed_domains=["acme.test"],
        secret_encrypted=legacy_encrypt("client-secret-OLD"))

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    endpoints = {e.account.slug: e for e in ProviderEndpoint.objects.select_related("account")}
    assert endpoints["acme"].secret_id != endpoints["globex"].secret_id
    assert endpoints["acme"].credential_encrypted.startswith("v2:")
    assert endpoints["acme"].get_credential() == "sk-acme-OLD"
    assert endpoints["globex"].get_credential() == "sk-globex-OLD"
    webhook = AlertChannel.objects.get(kind="webhook")
    assert webhook.secret_encrypted.startswith("v2:")
    assert webhook.get_secret() == "whsec_c2VjcmV0LWhvb2stYnl0ZXM="
    slack = AlertChannel.objects.get(kind="slack")
    assert slack.destination_url() == SLACK_URL
    assert "XXXXXXXX" not in slack.url and "XXXXXXXX" not in slack.name and slack.url.endswith("abcd")
    config = SsoConfig.objects.get()
    assert config.secret_encrypted.startswith("v2:") and config.client_secret() == "client-secret-OLD"
