"""The usage dashboard and its CSV breakdowns. Every view starts from billing.accounts.access.membership_get."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing.accounts.access import membership_get
from billing.dashboard import selectors as dashboard
from billing.dashboard.checklist import checklist_get
from billing.models import Account, UsageRecord
from tokonomics.csv_cells import csv_cell, decimal_text
from tokonomics.db_router import reads_from_replica
from tokonomics.web_request import SignedInRequest


@dataclass(frozen=True)
class PageFilters:
    """The page's filters as queries match them (`match`: a key by id), as the chips name them (`shown`: a
    key by name), and what to say when a `?key=` names no key of the account."""

    match: dict[str, str]
    shown: dict[str, str]
    notice: str = ""


def _filters(request: SignedInRequest, account: Account) -> PageFilters:
    asked = {name: request.GET[name] for name in dashboard.FILTERABLE if request.GET.get(name)}
    match, shown, notice = dict(asked), dict(asked), ""
    if "key" in asked:
        key = dashboard.key_filter_get(account=account, value=asked["key"])
        match["key"], shown["key"] = str(key.id), key.label
        if not key.known:
            notice = f"No key named “{asked['key']}” in this account: no calls match."
    return PageFilters(match, shown, notice)


def _range(request: SignedInRequest, account: Account) -> dashboard.Range:
    return dashboard.range_parse(request.GET, tz=ZoneInfo(account.timezone))


@require_GET
@login_required
@reads_from_replica
def dashboard_view(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    account = membership.account
    token = dashboard.live_token(account)
    if request.htmx and request.GET.get("token") == token:
        return HttpResponse(status=204)  # nothing new since the client's copy: polling costs one GET
    try:
        period = _range(request, account)
    except dashboard.RangeError as error:
        return HttpResponse(str(error), status=400, content_type="text/plain")
    filters = _filters(request, account)
    params = {k: v for k, v in request.GET.items() if k != "token"}
    cells = dashboard.cells(account, period, filters.match)
    totals = dashboard.totals(cells)
    comparing = request.GET.get("compare") == "previous"
    recent = list(dashboard.recent_calls(account, filters.match, period))
    context = {
        "tab": "dashboard",
        "membership": membership,
        "account": account,
        "period": period,
        "filters": filters.shown,
        "filter_notice": filters.notice,
        "query": urlencode(params),
        # what a range button keeps: the filters (and the comparison), never the range it replaces
        "filter_query": urlencode({k: v for k, v in params.items() if k in dashboard.FILTERABLE or k == "compare"}),
        "compare_query": urlencode({**params, "compare": "previous"}),
        "uncompare_query": urlencode({k: v for k, v in params.items() if k != "compare"}),
        "comparing": comparing,
        "params": params,
        "token": token,
        "totals": totals,
        "previous": dashboard.totals_compare(totals, dashboard.totals(
            dashboard.cells(account, period.previous, filters.match))) if comparing else None,
        "savings": dashboard.cached_savings(account, cells),
        "series": dashboard.spend_series(account, period, filters.match, tz=ZoneInfo(account.timezone)),
        "budgets": dashboard.budget_status(account),
        "breakdowns": [(d, dashboard.breakdown(account, d, period, filters.match, limit=10, cells=cells))
                       for d in dashboard.DIMENSIONS],
        "recent": recent,
        # an empty list says why: the filters, the range, or no call ever
        "ever_called": bool(recent) or UsageRecord.objects.filter(account=account).exists(),
    }
    if request.htmx:
        return render(request, "billing/dashboard.html#dashboard-live", context)
    context["checklist"] = checklist_get(account=account)
    return render(request, "billing/dashboard.html", context)


def _csv_filename(slug: str, dimension: str, period: dashboard.Range, filters: dict[str, str], tz: ZoneInfo) -> str:
    """`acme-tag-tenant-globex-20261201-20261203.csv`: the filters and the account's days, in filename-safe
    characters (a filter value is client text)."""
    parts = [slug, dimension, *(f"{name}-{value}" for name, value in filters.items()),
             f"{period.since.astimezone(tz):%Y%m%d}", f"{period.last_moment.astimezone(tz):%Y%m%d}"]
    name = "-".join(re.sub(r"[^A-Za-z0-9._=-]+", "_", part).strip("_")[:60] for part in parts)
    return f"{name}.csv"


@require_GET
@login_required
@reads_from_replica
def breakdown_csv(request: SignedInRequest, slug: str, dimension: str) -> HttpResponse:
    membership = membership_get(request, slug)
    account = membership.account
    if dimension not in dashboard.DIMENSIONS:
        return HttpResponse(f"unknown dimension {dimension!r}", status=404, content_type="text/plain")
    try:
        period = _range(request, account)
    except dashboard.RangeError as error:
        return HttpResponse(str(error), status=400, content_type="text/plain")
    filters = _filters(request, account)
    rows = dashboard.breakdown(account, dimension, period, filters.match, limit=10_000,
                               tag_calls_most=dashboard.TAG_CALLS_IN_CSV)
    if rows is None:
        return HttpResponse(f"More than {dashboard.TAG_CALLS_IN_CSV:,} calls match these filters in this range: too "
                            "many to add up their tags. Narrow the range or the filters.", status=413,
                            content_type="text/plain")
    response = HttpResponse(content_type="text/csv")
    filename = _csv_filename(slug, dimension, period, filters.shown, ZoneInfo(account.timezone))
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow([dimension, "requests", "tokens", "cost_usd"])
    for row in rows:
        writer.writerow([csv_cell(str(row["label"])), row["requests"],
                         row["tokens"] if row["tokens"] is not None else "", decimal_text(row["cost_usd"])])
    return response
