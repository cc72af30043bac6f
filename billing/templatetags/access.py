"""Role checks in templates through the rule the views enforce (billing/access.py), never a role name:
`{% if membership|can:"manage_budgets" %}`."""

from __future__ import annotations

from django import template

from billing.accounts.access import Membership

register = template.Library()


@register.filter
def can(membership: Membership | None, right: str) -> bool:
    return membership is not None and membership.can(right)
