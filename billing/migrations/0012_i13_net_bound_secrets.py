"""Each SSO client secret's ciphertext is bound to its row (issue 13): see proxy 0002_i13_net_bound_secrets."""

import uuid

from django.db import migrations, models

from tokonomics.crypto import rows_rebind

FIELDS = ["secret_encrypted"]


def _checks_now(schema_editor):
    # PostgreSQL refuses the ALTER TABLE below while the deferred foreign-key checks of these updates wait.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def forwards(apps, schema_editor):
    rows_rebind(apps.get_model("billing", "SsoConfig"), FIELDS)
    _checks_now(schema_editor)


def backwards(apps, schema_editor):
    rows_rebind(apps.get_model("billing", "SsoConfig"), FIELDS, reverse=True)
    _checks_now(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("billing", "0011_i13_meter_allow_unpriced_models")]

    operations = [
        migrations.AddField("ssoconfig", "secret_id", models.UUIDField(null=True, editable=False)),
        migrations.RunPython(forwards, backwards),
        migrations.AlterField(
            "ssoconfig", "secret_id", models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
        ),
    ]
