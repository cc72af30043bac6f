from decimal import Decimal

import pytest

from billing.models import Plan

pytestmark = pytest.mark.django_db


def test_plans_are_seeded_with_the_contract_limits() -> None:
    plans = {p.slug: p for p in Plan.objects.all()}
    assert set(plans) == {"starter", "pro", "enterprise"}
    starter, pro, enterprise = plans["starter"], plans["pro"], plans["enterprise"]
    assert (starter.price_usd_month, starter.max_seats, starter.max_alert_rules) == (Decimal("49.00"), 1, 3)
    assert (starter.retention_days, starter.monthly_request_limit) == (30, 1_000_000)
    assert (pro.price_usd_month, pro.max_seats, pro.max_alert_rules) == (Decimal("99.00"), 5, None)
    assert (pro.retention_days, pro.monthly_request_limit) == (90, 10_000_000)
    assert (enterprise.price_usd_month, enterprise.max_seats, enterprise.monthly_request_limit) == (
        Decimal("299.00"), None, None,
    )
    assert enterprise.retention_days == 365
    assert not starter.sso and not pro.sso and enterprise.sso
    assert not starter.white_label and not pro.white_label and enterprise.white_label


def test_account_retention_comes_from_plan_unless_overridden(acme) -> None:
    assert acme.effective_retention_days == 90
    acme.retention_days = 7
    assert acme.effective_retention_days == 7
