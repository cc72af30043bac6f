"""REST API: budgets, usage and the account of the caller."""

from __future__ import annotations

import base64
import binascii
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest
from ninja import Query, Router, Status

from billing.accounts import services as account_services
from billing.budgets import selectors as budget_selectors
from billing.budgets import services
from billing.sessions import selectors as session_selectors
from billing.usage import selectors
from billing.usage.selectors import TOKEN_FIELDS, UsageFilters
from tokonomics.api_common import ObjectId, caller_account, caller_actor, caller_token, decimal_string, responses
from tokonomics.db_router import replica_reads

from .models import Account, Budget, ManagementToken, UsageRecord
from .schemas import (
    AccountOut,
    AccountPatch,
    BudgetIn,
    BudgetOut,
    BudgetPatch,
    SessionOut,
    SessionQuery,
    SessionSummaryOut,
    UsageAggregateQuery,
    UsageAggregatesOut,
    UsageFilterQuery,
    UsageRecordPageOut,
    UsageRecordQuery,
)

router = Router()


@router.get("/account", response=responses({200: AccountOut}), tags=["account"])
def account_get(request: HttpRequest) -> dict[str, Any]:
    """The account the management token belongs to, its plan and the plan's limits."""
    token = caller_token(request)
    return _account_out(token.account, token)


@router.patch("/account", response=responses({200: AccountOut}), tags=["account"])
def account_update(request: HttpRequest, payload: AccountPatch) -> dict[str, Any]:
    """Change the account's proxy policy (admin tokens); the change is in the account's audit log."""
    token = caller_token(request)
    account = account_services.account_policy_update(account=token.account, actor=caller_actor(request),
                                                  changes=payload.model_dump(exclude_unset=True))
    return _account_out(account, token)


def _account_out(account: Account, token: ManagementToken) -> dict[str, Any]:
    return {
        "slug": account.slug,
        "name": account.name,
        "timezone": account.timezone,
        "retention_days": account.effective_retention_days,
        "plan": account.plan,
        "token": token,
        "on_redis_unavailable": account.on_redis_unavailable,
        "allow_unmetered_routes": account.allow_unmetered_routes,
        "allow_unpriced_models": account.allow_unpriced_models,
        **{name: getattr(account, name) for name in account_services.CACHE_FIELDS},
    }


@router.get("/budgets", response=responses({200: list[BudgetOut]}), tags=["budgets"])
def budget_list(request: HttpRequest) -> list[Budget]:
    return list(budget_selectors.budget_list(account=caller_account(request)))


@router.get("/budgets/{budget_id}", response=responses({200: BudgetOut}), tags=["budgets"])
def budget_get(request: HttpRequest, budget_id: ObjectId) -> Budget:
    return budget_selectors.budget_get(account=caller_account(request), budget_id=budget_id)


@router.post("/budgets", response=responses({201: BudgetOut}), tags=["budgets"])
def budget_create(request: HttpRequest, payload: BudgetIn) -> Status[Budget]:
    """Add a budget. A tenant or feature budget names one value, or '*' for a cap on each value."""
    budget = services.budget_create(account=caller_account(request), actor=caller_actor(request),
                                    **payload.model_dump())
    return Status(201, budget)


@router.patch("/budgets/{budget_id}", response=responses({200: BudgetOut}), tags=["budgets"])
def budget_update(request: HttpRequest, budget_id: ObjectId, payload: BudgetPatch) -> Budget:
    account = caller_account(request)
    budget = budget_selectors.budget_get(account=account, budget_id=budget_id)
    return services.budget_update(account=account, actor=caller_actor(request), budget=budget,
                                  changes=payload.model_dump(exclude_unset=True))


@router.delete("/budgets/{budget_id}", response=responses({204: None}), tags=["budgets"])
def budget_delete(request: HttpRequest, budget_id: ObjectId) -> Status[None]:
    account = caller_account(request)
    budget = budget_selectors.budget_get(account=account, budget_id=budget_id)
    services.budget_delete(account=account, actor=caller_actor(request), budget=budget)
    return Status(204, None)


def _usage_filters(query: UsageFilterQuery) -> UsageFilters:
    if query.since is not None and query.until is not None and query.since >= query.until:
        raise ValidationError({"until": "must be later than since"})
    return UsageFilters(**{f.name: getattr(query, f.name) for f in fields(UsageFilters)})


def _cursor_encode(record: UsageRecord) -> str:
    raw = f"{record.created_at.isoformat()}|{record.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_decode(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, record_id = raw.split("|")
        after = datetime.fromisoformat(created_at), int(record_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        after = None
    if after is None or after[0].tzinfo is None:
        raise ValidationError({"cursor": "is not a next_cursor this API returned"})
    return after


@router.get("/usage/records", response=responses({200: UsageRecordPageOut}), tags=["usage"])
def usage_record_list(request: HttpRequest, query: Query[UsageRecordQuery]) -> dict[str, Any]:
    """Usage records, newest first, a page at a time. Records hold no prompt or response content: none is stored."""
    filters = _usage_filters(query)
    after = _cursor_decode(query.cursor) if query.cursor else None
    account = caller_account(request)
    with replica_reads():
        records = selectors.usage_record_list(
            account=account,
            since=query.since,
            until=query.until,
            filters=filters,
            after=after,
            limit=query.limit + 1,  # one more tells whether another page follows
        )
    page = records[: query.limit]
    return {"items": page, "next_cursor": _cursor_encode(page[-1]) if len(records) > query.limit else None}


@router.get("/sessions", response=responses({200: list[SessionOut]}), tags=["sessions"])
def session_list(request: HttpRequest, query: Query[SessionQuery]) -> list[dict[str, Any]]:
    """Agent runs (calls that sent X-Tokonomics-Session) of the last 30 days, most recent first."""
    account = caller_account(request)
    with replica_reads():
        rows = session_selectors.session_list(account=account, limit=query.limit)
    return [session_selectors.session_row_dict(row) for row in rows]


@router.get("/sessions/{session}", response=responses({200: SessionSummaryOut}), tags=["sessions"])
def session_get(request: HttpRequest, session: str) -> dict[str, Any]:
    """One run: its calls, tokens and cost, by model and by provider, and its git context at start and end."""
    account = caller_account(request)
    with replica_reads():
        summary = session_selectors.session_get(account=account, session=session[:100])
    if summary is None:
        raise Http404("No such session in this account.")
    return session_selectors.session_summary_dict(summary)


@router.get("/usage/aggregates", response=responses({200: UsageAggregatesOut}), tags=["usage"])
def usage_aggregate_list(request: HttpRequest, query: Query[UsageAggregateQuery]) -> dict[str, Any]:
    """Usage summed per feature, tenant, model, provider, key, environment, or per day or hour of the account's
    time zone. cost_usd sums the calls with a known price; unknown_cost_requests counts the others."""
    account = caller_account(request)
    with replica_reads():
        groups = selectors.usage_aggregate_list(
            account=account,
            group_by=query.group_by,
            since=query.since,
            until=query.until,
            filters=_usage_filters(query),
        )
    total: dict[str, Any] = {
        name: sum(getattr(g, name) for g in groups) for name in ("requests", "unknown_cost_requests", *TOKEN_FIELDS)
    }
    total["cost_usd"] = decimal_string(sum((g.cost_usd for g in groups), Decimal(0)))
    return {
        "group_by": query.group_by,
        "since": query.since,
        "until": query.until,
        "groups": [{**g.__dict__, "cost_usd": decimal_string(g.cost_usd)} for g in groups],
        "total": total,
    }
