"""benchmarkdashboards at a tiny scale: the records it seeds roll up exactly as ingestion would roll them up,
and every page it measures answers."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Sum

from billing.models import LABEL_FIELDS, Account, UsageDayRollup, UsageLabelSet, UsageRecord, UsageTagRollup
from billing.usage.labels import labels_digest, labels_of
from billing.usage.rollups import ROLLUPS
from tools import scale

from ..billing.usage.test_rollups import assert_rollups_match_records


@pytest.mark.django_db(transaction=True)  # the command runs VACUUM, which no transaction may hold
def test_seeds_records_with_their_rollups_and_measures_every_page(plans) -> None:
    out = io.StringIO()
    call_command("benchmarkdashboards", "--account", "scale-test", "--records", "2000", "--days", "3",
                 "--batch-size", "700", "--repeat", "1", "--json", "-", stdout=out)
    report = json.loads(out.getvalue()[out.getvalue().index("{\n"):])
    account = Account.objects.get(slug="scale-test")
    records = UsageRecord.objects.filter(account=account)
    assert report["records_added"] == records.count() == 2000
    assert records.values("tenant").distinct().count() > 100
    assert records.filter(cost_usd=None).exists() and records.filter(status_code=429).exists()

    assert_rollups_match_records()  # every cell of every rollup, hour and day rows, and the tag rollup
    raw = records.aggregate(requests=Count("pk"), tokens=Sum("input_tokens"), cost=Sum("cost_usd"))
    for rollup in ROLLUPS:
        for model in (rollup.hourly, rollup.daily):
            rolled = model.objects.filter(account=account).aggregate(
                requests=Sum("requests"), tokens=Sum("input_tokens"), cost=Sum("cost_usd"))
            assert rolled == raw, model
    intents = records.filter(tags__has_key="intent")
    assert UsageTagRollup.objects.filter(account=account, tag="intent").aggregate(
        requests=Sum("requests"), cost=Sum("cost_usd")) == {"requests": intents.count(),
                                                            "cost": intents.aggregate(c=Sum("cost_usd"))["c"]}

    pages = {p["name"]: p for p in report["pages"]}
    expected = {p.name for p in scale.dashboard_pages(account=account, api_token="unused")}
    assert set(pages) == expected
    assert {p["status"] for p in pages.values()} == {200, 204}
    assert pages["live partial, nothing new"]["status"] == 204
    assert all(p["queries"] > 0 and p["median_ms"] > 0 for p in pages.values())
    assert "every page under 300 ms" in out.getvalue() or "over 300 ms" in out.getvalue()
    share = report["bytes_per_record"]
    assert share["heap"] > 0 and share["indexes"] > 0 and share["label_sets"] > 0
    assert share["total"] == pytest.approx(share["heap"] + share["indexes"] + share["label_sets"])
    assert f"bytes per usage record: {share['total']:.0f} B" in out.getvalue()


@pytest.mark.django_db
def test_seeding_again_adds_only_the_missing_records(plans) -> None:
    account = scale.scale_account_prepare(slug="scale-test")
    assert scale.usage_seed(account=account, total=300, days=1) == 300
    assert scale.usage_seed(account=account, total=300, days=1) == 0
    assert scale.usage_seed(account=account, total=450, days=1, batch_size=100) == 150
    assert UsageRecord.objects.filter(account=account).count() == 450
    # The seed names its label sets in SQL as the ledger does in Python: ingestion finds them, never twice.
    label_sets = list(UsageLabelSet.objects.filter(account=account).values("digest", *LABEL_FIELDS))
    assert len(label_sets) > 10
    assert all(labels_digest(labels_of(s)) == s["digest"] for s in label_sets)
    assert_rollups_match_records()
    total = UsageDayRollup.objects.filter(account=account).aggregate(c=Sum("cost_usd"))["c"]
    assert total == UsageRecord.objects.aggregate(c=Sum("cost_usd"))["c"] > Decimal(0)


@pytest.mark.django_db
def test_never_adds_records_to_a_real_account(acme) -> None:
    with pytest.raises(ImproperlyConfigured, match="not a benchmark account"):
        scale.scale_account_prepare(slug="acme")


def test_refuses_anything_but_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "vendor", "sqlite")
    with pytest.raises(ImproperlyConfigured, match="needs PostgreSQL"):
        scale.require_postgresql()
