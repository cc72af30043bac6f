"""Alert channel secrets (issue 13): each ciphertext bound to its row (see proxy 0002_i13_net_bound_secrets),
and Slack URLs, which carry their token, moved into url_encrypted with only a masked form left in url.
A Slack channel applyconfig named after its URL is renamed after a digest of it."""

import hashlib
import uuid
from urllib.parse import urlsplit

from django.db import migrations, models

from tokonomics.crypto import decrypt_secret, encrypt_secret, rows_rebind

FIELDS = ["secret_encrypted"]


def _masked(url):
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/…{url[-4:]}"


def _checks_now(schema_editor):
    # PostgreSQL refuses the ALTER TABLE below while the deferred foreign-key checks of these updates wait.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def forwards(apps, schema_editor):
    AlertChannel = apps.get_model("alerts", "AlertChannel")
    rows_rebind(AlertChannel, FIELDS)
    for channel in AlertChannel.objects.filter(kind="slack").exclude(url="").filter(url_encrypted=""):
        context = f"alerts.alertchannel.url_encrypted:{channel.secret_id}"
        if channel.name == f"slack:{channel.url}":
            channel.name = f"slack:{hashlib.sha256(channel.url.encode()).hexdigest()[:16]}"
        channel.url_encrypted = encrypt_secret(channel.url, context=context)
        channel.url = _masked(channel.url)
        channel.save(update_fields=["name", "url", "url_encrypted"])
    _checks_now(schema_editor)


def backwards(apps, schema_editor):
    AlertChannel = apps.get_model("alerts", "AlertChannel")
    for channel in AlertChannel.objects.exclude(url_encrypted=""):
        channel.url = decrypt_secret(channel.url_encrypted,
                                     context=f"alerts.alertchannel.url_encrypted:{channel.secret_id}")
        channel.save(update_fields=["url"])
    rows_rebind(AlertChannel, FIELDS, reverse=True)
    _checks_now(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("alerts", "0003_alert_events")]

    operations = [
        migrations.AddField("alertchannel", "secret_id", models.UUIDField(null=True, editable=False)),
        migrations.AddField("alertchannel", "url_encrypted", models.TextField(blank=True, editable=False)),
        migrations.RunPython(forwards, backwards),
        migrations.AlterField(
            "alertchannel", "secret_id", models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
        ),
        migrations.AlterField(
            "alertchannel", "url",
            models.URLField(blank=True, help_text="Masked for Slack channels (see set_url).", max_length=500),
        ),
    ]
