"""Each provider credential's ciphertext is bound to its row (issue 13): a secret_id per row, and every
existing `v1:` ciphertext re-encrypted as `v2:` bound to it. secret_id is added nullable, filled, then
made unique and required, since a callable default would give every existing row the same value."""

import uuid

from django.db import migrations, models

from tokonomics.crypto import rows_rebind

FIELDS = ["credential_encrypted"]


def _checks_now(schema_editor):
    # PostgreSQL refuses the ALTER TABLE below while the deferred foreign-key checks of these updates wait.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def forwards(apps, schema_editor):
    rows_rebind(apps.get_model("proxy", "ProviderEndpoint"), FIELDS)
    _checks_now(schema_editor)


def backwards(apps, schema_editor):
    rows_rebind(apps.get_model("proxy", "ProviderEndpoint"), FIELDS, reverse=True)
    _checks_now(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("proxy", "0002_i13_webapp_apikey_created_by")]

    operations = [
        migrations.AddField("providerendpoint", "secret_id", models.UUIDField(null=True, editable=False)),
        migrations.RunPython(forwards, backwards),
        migrations.AlterField(
            "providerendpoint", "secret_id", models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
        ),
    ]
