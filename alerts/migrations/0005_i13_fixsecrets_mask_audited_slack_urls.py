"""Slack URLs the audit log kept in plaintext (issue 13): before 0004 encrypted the channels, every
`alert_channel.*` entry copied the full URL, token included, into before/after, and applyconfig named a
channel (the entry's target) `slack:<url>`. They are masked here the way the model masks them now, so the
audit page shows no more of a Slack URL than the channel page does. Nothing to undo going back."""

from urllib.parse import urlsplit

from django.db import migrations

MASK = "…"


def _masked(url):
    # alerts.models.masked_url, copied so this migration keeps doing what it did when written.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/{MASK}{url[-4:]}"


def _is_url(value):
    return isinstance(value, str) and "://" in value and MASK not in value


def _slack_host(url):
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return host == "slack.com" or host.endswith(".slack.com")


def mask_slack_urls(apps, schema_editor):
    AuditEntry = apps.get_model("billing", "AuditEntry")
    AlertChannel = apps.get_model("alerts", "AlertChannel")
    slack_names = set(AlertChannel.objects.filter(kind="slack").values_list("account_id", "name"))
    for entry in AuditEntry.objects.filter(action__startswith="alert_channel.").iterator():
        before, after = dict(entry.before or {}), dict(entry.after or {})
        urls = [d["url"] for d in (before, after) if _is_url(d.get("url"))]
        slack = ("slack" in (before.get("kind"), after.get("kind")) or entry.target.startswith("slack:")
                 or (entry.account_id, entry.target) in slack_names or any(_slack_host(u) for u in urls))
        if not slack:
            continue
        for values in (before, after):
            if _is_url(values.get("url")):
                values["url"] = _masked(values["url"])
        target = entry.target
        if target.startswith("slack:") and _is_url(target.removeprefix("slack:")):
            target = "slack:" + _masked(target.removeprefix("slack:"))
        if (before, after, target) != (entry.before, entry.after, entry.target):
            entry.before, entry.after, entry.target = before, after, target
            entry.save(update_fields=["before", "after", "target"])


class Migration(migrations.Migration):
    dependencies = [("alerts", "0004_i13_net_bound_secrets"), ("billing", "0006_audit_entries")]

    operations = [migrations.RunPython(mask_slack_urls, migrations.RunPython.noop)]
