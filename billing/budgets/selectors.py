"""Read-side queries of budgets, each scoped to one account."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from billing.models import Account, Budget


def budget_list(*, account: Account) -> QuerySet[Budget]:
    return Budget.objects.filter(account=account).prefetch_related("channels").order_by("id")


def budget_get(*, account: Account, budget_id: int) -> Budget:
    budget = budget_list(account=account).filter(pk=budget_id).first()
    if budget is None:
        raise Http404(f"No budget {budget_id} in this account.")
    return budget
