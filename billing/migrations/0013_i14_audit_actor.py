"""Audit entries say which kind of actor made the change (a person, a management token, the config file, a
command), and which token. Older entries: a linked user is a person; an unlinked label is classified by its
shape (str() of a token was `name (mt_…, role)`; a deleted person's label is their email; the rest were
commands)."""

import django.db.models.deletion
from django.db import migrations, models


def classify(apps, schema_editor):
    AuditEntry = apps.get_model("billing", "AuditEntry")
    unlinked = AuditEntry.objects.filter(actor__isnull=True)
    unlinked.filter(actor_label__regex=r"\(mt_[^)]*\)$").update(actor_kind="token")
    unlinked.exclude(actor_label__contains="@").exclude(actor_label__regex=r"\(mt_[^)]*\)$").update(
        actor_kind="system")


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0012_i13_net_bound_secrets"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditentry",
            name="actor_kind",
            field=models.CharField(
                choices=[("user", "Person (web app)"), ("token", "Management token (REST API)"),
                         ("config", "Config file (applyconfig)"), ("system", "System (a command or a background job)")],
                default="user", max_length=10),
        ),
        migrations.AddField(
            model_name="auditentry",
            name="actor_token",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                    related_name="audit_entries", to="billing.managementtoken"),
        ),
        migrations.AlterField(
            model_name="auditentry",
            name="actor_label",
            field=models.CharField(help_text="Who, kept even if the user or token is deleted.", max_length=200),
        ),
        migrations.RunPython(classify, migrations.RunPython.noop),
    ]
