"""Budget pages. Every view starts from billing.accounts.access.membership_get."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from billing.accounts.access import Membership, membership_get
from billing.budgets import selectors, services
from billing.dashboard import selectors as dashboard
from billing.models import Account, Budget
from tokonomics.audit import Actor
from tokonomics.responses import after_change, confirm_page
from tokonomics.validation import form_errors_from
from tokonomics.web_request import SignedInRequest


class BudgetForm(forms.ModelForm):
    alert_at = forms.CharField(required=False, initial="50, 75, 90, 100",
                               help_text="Percentages, comma-separated. Empty: no threshold alerts.")

    class Meta:
        model = Budget
        fields = ["scope", "match", "period", "limit_usd", "hard", "alert_at", "on_exceed", "downgrade_to",
                  "downgrade_at"]
        labels = {"limit_usd": "Limit (USD)", "on_exceed": "Near the limit", "downgrade_to": "Downgrade to",
                  "downgrade_at": "Downgrade from (% of the limit)"}
        help_texts = {"on_exceed": "deny: calls are refused at the limit · downgrade: from the percentage below, "
                                   "calls are served by the route or model you name (cheaper), and the limit "
                                   "still refuses them at 100%."}

    def __init__(self, *args: Any, account: Account, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.account = account
        if not self.instance.pk:
            self.initial.setdefault("scope", Budget.Scope.ACCOUNT)
            self.initial.setdefault("period", Budget.Period.MONTH)
        if self.instance.pk:
            self.initial["alert_at"] = ", ".join(str(t) for t in self.instance.alert_at)
        # A form posted without the downgrade fields (an older page, a script) keeps "deny".
        self.fields["on_exceed"].required = False
        self.fields["downgrade_at"].required = False

    def clean_on_exceed(self) -> str:
        return str(self.cleaned_data.get("on_exceed") or Budget.OnExceed.DENY)

    def clean_downgrade_at(self) -> int:
        value = self.cleaned_data.get("downgrade_at")
        return 90 if value is None else int(value)

    def clean_alert_at(self) -> list[int]:
        raw = self.cleaned_data["alert_at"] or ""
        try:
            values = sorted({int(part) for part in raw.replace(";", ",").split(",") if part.strip()})
        except ValueError:
            raise forms.ValidationError("Use whole percentages separated by commas, e.g. 50, 75, 90, 100.") from None
        if any(not 0 < v <= 1000 for v in values):
            raise forms.ValidationError("Each threshold is a percentage from 1 to 1000.")
        return values


# A '*' budget's values listed on the Budgets page: its biggest spenders, all of them with `?values=<id>`.
TOP_VALUES = 5
ALL_VALUES = 1000


@require_GET
@login_required
def budget_list(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    return _budget_page(request, membership, BudgetForm(account=membership.account))


def _budget_page(request: SignedInRequest, membership: Membership, form: BudgetForm, status: int = 200,
                 editing: Budget | None = None) -> HttpResponse:
    account = membership.account
    budgets = list(account.budgets.order_by("scope", "match", "period"))
    expanded = request.GET.get("values", "")
    shown = None
    if expanded:
        shown = selectors.budget_get(account=account, budget_id=int(expanded) if expanded.isdigit() else 0)
    rows = dashboard.budget_status(account, budgets=budgets, top=TOP_VALUES)
    if shown is not None:
        rows = [r for r in rows if r["budget"].pk != shown.pk] + dashboard.budget_status(
            account, budgets=[shown], top=ALL_VALUES)
    status_by_budget: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        status_by_budget.setdefault(row["budget"].pk, []).append(row)
    context = {"tab": "budgets", "membership": membership, "account": account, "form": form, "editing": editing,
               "budgets": [(b, status_by_budget.get(b.pk, [])) for b in budgets]}
    template = "billing/budgets.html#budget-form" if request.htmx else "billing/budgets.html"
    return render(request, template, context, status=status)


@require_GET
@login_required
def budget_docs(request: SignedInRequest, slug: str) -> HttpResponse:
    """docs/budgets.md inside the app, next to the numbers it explains (a self-hosted install has no docs site)."""
    membership = membership_get(request, slug)
    text = (Path(settings.BASE_DIR) / "docs" / "budgets.md").read_text(encoding="utf-8")
    return render(request, "billing/budget_docs.html", {"tab": "budgets", "membership": membership,
                                                         "account": membership.account, "text": text})


@require_http_methods(["GET", "POST"])
@login_required
def budget_save(request: SignedInRequest, slug: str, budget_id: int | None = None) -> HttpResponse:
    """GET: the budgets page with the form filled from the budget (editing it); POST: save it."""
    membership = membership_get(request, slug)
    if request.method == "GET" and budget_id is None:
        return redirect("budget_list", slug)  # the new-budget form's address, bookmarked or refreshed
    membership.require("manage_budgets")
    budget = get_object_or_404(Budget, pk=budget_id, account=membership.account) if budget_id else None
    if request.method == "GET":
        return _budget_page(request, membership, BudgetForm(instance=budget, account=membership.account),
                            editing=budget)
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
    return _budget_page(request, membership, form, status=200 if request.htmx else 400, editing=budget)


@require_http_methods(["GET", "POST"])
@login_required
def budget_delete(request: SignedInRequest, slug: str, budget_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_budgets")
    budget = get_object_or_404(Budget, pk=budget_id, account=membership.account)
    if request.method == "GET":
        context = {"tab": "budgets", "membership": membership, "account": membership.account}
        return confirm_page(request, context=context,
                            title=f"Delete budget {budget}?",
                            message="Spend is no longer capped or alerted by it; its counters are dropped.",
                            confirm_label="Delete budget", cancel_url=reverse("budget_list", args=[slug]))
    services.budget_delete(account=membership.account, actor=Actor.of_user(request.user), budget=budget)
    messages.success(request, "Budget deleted.")
    return redirect("budget_list", slug)
