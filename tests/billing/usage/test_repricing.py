from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import call_command

from billing.models import PriceOverride, UsageRecord
from billing.usage.repricing import usage_record_reprice
from proxy.models import ProviderEndpoint

from ...support import usage_record_create
from .test_rollups import assert_rollups_match_records

pytestmark = pytest.mark.django_db


def _record(account, n: int, **fields) -> UsageRecord:
    values = dict(request_id=f"req_{n}", account=account, provider="openai", model="gpt-4o-mini",
                  input_tokens=1_000_000, output_tokens=1_000_000, cost_usd=Decimal("0.75"), status_code=200,
                  created_at=datetime(2026, 11, 1, 12, tzinfo=UTC))
    values.update(fields)
    return usage_record_create(**values)


def test_reprice_applies_a_corrected_override_over_a_range(acme) -> None:
    ProviderEndpoint.objects.create(account=acme, slug="openai", wire_format="openai",
                                    base_url="https://api.openai.com/v1", pricing_provider="openai")
    inside = _record(acme, 1)
    outside = _record(acme, 2, created_at=datetime(2026, 10, 1, tzinfo=UTC))
    denied = _record(acme, 3, status_code=429, denied_scope="account_budget", cost_usd=Decimal(0))
    PriceOverride.objects.create(account=acme, provider="openai", model="gpt-4o-mini",
                                 input_per_mtok=Decimal("1"), output_per_mtok=Decimal("2"))
    out = io.StringIO()
    call_command("repriceusage", "--account", "acme", "--since", "2026-11-01T00:00:00Z", stdout=out)
    assert "re-priced 1 usage records of acme; 1 costs changed" in out.getvalue()
    for record in (inside, outside, denied):
        record.refresh_from_db()
    assert inside.cost_usd == Decimal("3")
    assert outside.cost_usd == Decimal("0.75")
    assert denied.cost_usd == 0


def test_reprice_is_idempotent(acme) -> None:
    _record(acme, 1, cost_usd=None)
    assert usage_record_reprice(records=UsageRecord.objects.all()) == (1, 1)
    assert usage_record_reprice(records=UsageRecord.objects.all()) == (1, 0)
    assert UsageRecord.objects.get().cost_usd == Decimal("0.75")  # gpt-4o-mini: $0.15 in + $0.60 out per MTok


def test_reprice_moves_the_rollups_with_the_records(acme) -> None:
    from billing.usage.rollups import usage_rollup_add

    records = [_record(acme, 1, cost_usd=None, tags={"intent": "summarize"}), _record(acme, 2),
               _record(acme, 3, cost_usd=Decimal("0.1"))]
    usage_rollup_add(records=records)
    assert usage_record_reprice(records=UsageRecord.objects.all()) == (3, 2)
    assert_rollups_match_records()  # costs moved, and the unpriced call is priced now


def test_a_response_cache_hit_is_never_repriced(acme) -> None:
    # A hit owes nothing whatever its counts (a record written with the original's tokens would otherwise be
    # charged by a re-pricing).
    hit = _record(acme, 1, cost_usd=Decimal(0), cache_hit=True, cache_saved_usd=Decimal("0.75"))
    assert usage_record_reprice(records=UsageRecord.objects.all()) == (0, 0)
    hit.refresh_from_db()
    assert (hit.cost_usd, hit.cache_saved_usd) == (Decimal(0), Decimal("0.75"))
