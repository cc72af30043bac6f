"""The usage dashboard and its CSV breakdowns. Every view starts from billing.accounts.access.membership_get."""

from __future__ import annotations

import csv
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing.accounts.access import membership_get
from billing.dashboard import selectors as dashboard
from billing.dashboard.checklist import checklist_get
from tokonomics.csv_cells import csv_cell
from tokonomics.web_request import SignedInRequest


def _filters(request: SignedInRequest) -> dict[str, str]:
    return {name: request.GET[name] for name in dashboard.FILTERABLE if request.GET.get(name)}


@require_GET
@login_required
def dashboard_view(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    account = membership.account
    token = dashboard.live_token(account)
    if request.htmx and request.GET.get("token") == token:
        return HttpResponse(status=204)  # nothing new since the client's copy: polling costs one GET
    try:
        period = dashboard.range_parse(request.GET)
    except dashboard.RangeError as error:
        return HttpResponse(str(error), status=400, content_type="text/plain")
    filters = _filters(request)
    params = {k: v for k, v in request.GET.items() if k != "token"}
    cells = dashboard.cells(account, period, filters)
    context = {
        "tab": "dashboard",
        "membership": membership,
        "account": account,
        "period": period,
        "filters": filters,
        "query": urlencode(params),
        "params": params,
        "token": token,
        "totals": dashboard.totals(cells),
        "savings": dashboard.cached_savings(account, cells),
        "series": dashboard.spend_series(account, period, filters),
        "budgets": dashboard.budget_status(account),
        "breakdowns": [(d, dashboard.breakdown(account, d, period, filters, limit=10, cells=cells))
                       for d in dashboard.DIMENSIONS],
        "recent": dashboard.recent_calls(account, filters),
    }
    if request.htmx:
        return render(request, "billing/dashboard.html#dashboard-live", context)
    context["checklist"] = checklist_get(account=account)
    return render(request, "billing/dashboard.html", context)


@require_GET
@login_required
def breakdown_csv(request: SignedInRequest, slug: str, dimension: str) -> HttpResponse:
    membership = membership_get(request, slug)
    if dimension not in dashboard.DIMENSIONS:
        return HttpResponse(f"unknown dimension {dimension!r}", status=404, content_type="text/plain")
    try:
        period = dashboard.range_parse(request.GET)
    except dashboard.RangeError as error:
        return HttpResponse(str(error), status=400, content_type="text/plain")
    rows = dashboard.breakdown(membership.account, dimension, period, _filters(request), limit=10_000)
    response = HttpResponse(content_type="text/csv")
    filename = f"{slug}-{dimension}-{period.since:%Y%m%d}-{period.until:%Y%m%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow([dimension, "requests", "tokens", "cost_usd"])
    for row in rows:
        writer.writerow([csv_cell(str(row["label"])), row["requests"],
                         row["tokens"] if row["tokens"] is not None else "", row["cost_usd"]])
    return response
