"""Dashboards and budgets. Every view starts from billing.access.membership_get."""

from __future__ import annotations

import csv
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from billing import dashboard, services
from billing.access import membership_get
from billing.models import Budget
from tokonomics.audit import Actor
from tokonomics.csv_cells import csv_cell
from tokonomics.responses import after_change
from tokonomics.validation import form_errors_from


def _filters(request: HttpRequest) -> dict[str, str]:
    return {name: request.GET[name] for name in dashboard.FILTERABLE if request.GET.get(name)}


@require_GET
@login_required
def dashboard_view(request: HttpRequest, slug: str) -> HttpResponse:
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
    template = "billing/dashboard.html#dashboard-live" if request.htmx else "billing/dashboard.html"
    return render(request, template, context)


@require_GET
@login_required
def breakdown_csv(request: HttpRequest, slug: str, dimension: str) -> HttpResponse:
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


class BudgetForm(forms.ModelForm):
    alert_at = forms.CharField(required=False, initial="50, 75, 90, 100",
                               help_text="Percentages, comma-separated. Empty: no threshold alerts.")

    class Meta:
        model = Budget
        fields = ["scope", "match", "period", "limit_usd", "hard", "alert_at"]
        labels = {"limit_usd": "Limit (USD)"}

    def __init__(self, *args, account, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.instance.account = account
        if not self.instance.pk:
            self.initial.setdefault("scope", Budget.Scope.ACCOUNT)
            self.initial.setdefault("period", Budget.Period.MONTH)
        if self.instance.pk:
            self.initial["alert_at"] = ", ".join(str(t) for t in self.instance.alert_at)

    def clean_alert_at(self) -> list[int]:
        raw = self.cleaned_data["alert_at"] or ""
        try:
            values = sorted({int(part) for part in raw.replace(";", ",").split(",") if part.strip()})
        except ValueError:
            raise forms.ValidationError("Use whole percentages separated by commas, e.g. 50, 75, 90, 100.") from None
        if any(not 0 < v <= 1000 for v in values):
            raise forms.ValidationError("Each threshold is a percentage from 1 to 1000.")
        return values


@require_GET
@login_required
def budget_list(request: HttpRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    return _budget_page(request, membership, BudgetForm(account=membership.account))


def _budget_page(request: HttpRequest, membership, form: BudgetForm, status: int = 200) -> HttpResponse:  # type: ignore[no-untyped-def]
    context = {"tab": "budgets", "membership": membership, "account": membership.account, "form": form,
               "budgets": membership.account.budgets.order_by("scope", "match", "period"),
               "status": {(s["budget"].pk, s["value"]): s for s in dashboard.budget_status(membership.account)}}
    template = "billing/budgets.html#budget-form" if request.htmx else "billing/budgets.html"
    return render(request, template, context, status=status)


@require_POST
@login_required
def budget_save(request: HttpRequest, slug: str, budget_id: int | None = None) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_budgets")
    budget = get_object_or_404(Budget, pk=budget_id, account=membership.account) if budget_id else None
    # The form validates a copy: the service needs the budget as stored, to log what it was.
    form = BudgetForm(request.POST, instance=Budget.objects.get(pk=budget.pk) if budget else None,
                      account=membership.account)
    if form.is_valid():
        fields = {name: form.cleaned_data[name] for name in BudgetForm.Meta.fields}
        actor = Actor.of_user(request.user)
        try:
            if budget is None:
                saved = services.budget_create(account=membership.account, actor=actor, **fields)
            else:
                saved = services.budget_update(account=membership.account, actor=actor, budget=budget, changes=fields)
        except ValidationError as error:
            form_errors_from(form, error)
        else:
            messages.success(request, f"Budget saved: {saved}.")
            return after_change(request, reverse("budget_list", args=[slug]))
    return _budget_page(request, membership, form, status=200 if request.htmx else 400)


@require_POST
@login_required
def budget_delete(request: HttpRequest, slug: str, budget_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_budgets")
    budget = get_object_or_404(Budget, pk=budget_id, account=membership.account)
    services.budget_delete(account=membership.account, actor=Actor.of_user(request.user), budget=budget)
    messages.success(request, "Budget deleted.")
    return redirect("budget_list", slug)
