from decimal import Decimal

from django.db import migrations

# CONTRACT §3. Plans are data: operators edit them in the admin afterwards.
PLANS = [
    dict(slug="starter", name="Starter", price_usd_month=Decimal("49"), max_seats=1, max_alert_rules=3,
         retention_days=30, monthly_request_limit=1_000_000, sso=False, white_label=False),
    dict(slug="pro", name="Pro", price_usd_month=Decimal("99"), max_seats=5, max_alert_rules=None,
         retention_days=90, monthly_request_limit=10_000_000, sso=False, white_label=False),
    dict(slug="enterprise", name="Enterprise", price_usd_month=Decimal("299"), max_seats=None,
         max_alert_rules=None, retention_days=365, monthly_request_limit=None, sso=True, white_label=True),
]


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for fields in PLANS:
        Plan.objects.update_or_create(slug=fields["slug"], defaults=fields)


def unseed(apps, schema_editor):
    apps.get_model("billing", "Plan").objects.filter(slug__in=[p["slug"] for p in PLANS]).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_initial")]
    operations = [migrations.RunPython(seed, unseed)]
