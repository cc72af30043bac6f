"""The account's own model prices (overrides of the catalogue) in the web app: everyone sees them, admins
add, change and delete them, each change through the audited price services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from billing.accounts.access import Membership, membership_get
from billing.accounts.services import PRICE_FIELDS, price_override_delete, price_override_set
from billing.models import PriceOverride
from tokonomics.audit import Actor
from tokonomics.responses import confirm_page
from tokonomics.validation import form_errors_from
from tokonomics.web_request import SignedInRequest


class PriceForm(forms.ModelForm):
    class Meta:
        model = PriceOverride
        fields = ["provider", "model", "input_per_mtok", "output_per_mtok", "cached_input_per_mtok",
                  "cache_write_per_mtok"]
        labels = {"input_per_mtok": "Input (USD per million tokens)",
                  "output_per_mtok": "Output (USD per million tokens)",
                  "cached_input_per_mtok": "Cached input (USD per million tokens)",
                  "cache_write_per_mtok": "Cache write (USD per million tokens)"}
        help_texts = {"provider": "The provider endpoint's slug, as in /proxy/{provider}/…",
                      "model": "The model name as clients send it."}

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in PRICE_FIELDS:
            self.fields[name].validators.append(MinValueValidator(0, "A price cannot be negative."))
        if editing:  # provider and model are what the price is for: another pair is another price
            self.fields["provider"].disabled = self.fields["model"].disabled = True

    def validate_unique(self) -> None:
        """The service says when the pair already has a price (create) or keeps it (edit)."""


def _context(membership: Membership) -> dict[str, Any]:
    return {"tab": "prices", "membership": membership, "account": membership.account,
            "can_manage": membership.can("manage_prices")}


def _prices_page(request: SignedInRequest, membership: Membership, form: PriceForm,
                 editing: PriceOverride | None = None, status: int = 200) -> HttpResponse:
    prices = PriceOverride.objects.filter(account=membership.account).order_by("provider", "model")
    return render(request, "billing/prices.html", {**_context(membership), "prices": prices, "form": form,
                                                   "editing": editing}, status=status)


@require_GET
@login_required
def price_list(request: SignedInRequest, slug: str) -> HttpResponse:
    return _prices_page(request, membership_get(request, slug), PriceForm())


def _save(request: SignedInRequest, membership: Membership, form: PriceForm, *, creating: bool) -> bool:
    data = form.cleaned_data
    if creating and PriceOverride.objects.filter(account=membership.account, provider=data["provider"],
                                                 model=data["model"]).exists():
        form.add_error("model", f"{data['provider']}/{data['model']} already has a price here: edit that one.")
        return False
    try:
        price_override_set(account=membership.account, actor=Actor.of_user(request.user), provider=data["provider"],
                           model=data["model"], prices={name: data[name] for name in PRICE_FIELDS})
    except ValidationError as error:
        form_errors_from(form, error)
        return False
    messages.success(request, f"Price for {data['provider']}/{data['model']} saved; calls from now on use it.")
    return True


@require_http_methods(["GET", "POST"])
@login_required
def price_create(request: SignedInRequest, slug: str) -> HttpResponse:
    membership = membership_get(request, slug)
    if request.method == "GET":
        return redirect("price_list", slug)
    membership.require("manage_prices")
    form = PriceForm(request.POST)
    if form.is_valid() and _save(request, membership, form, creating=True):
        return redirect("price_list", slug)
    return _prices_page(request, membership, form, status=400)


@require_http_methods(["GET", "POST"])
@login_required
def price_update(request: SignedInRequest, slug: str, price_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_prices")
    price = get_object_or_404(PriceOverride, pk=price_id, account=membership.account)
    if request.method == "GET":
        return _prices_page(request, membership, PriceForm(instance=price, editing=True), editing=price)
    # The form validates a copy: the service needs the price as stored, to log what it was.
    form = PriceForm(request.POST, instance=PriceOverride.objects.get(pk=price.pk), editing=True)
    if form.is_valid() and _save(request, membership, form, creating=False):
        return redirect("price_list", slug)
    return _prices_page(request, membership, form, editing=price, status=400)


@require_http_methods(["GET", "POST"])
@login_required
def price_delete(request: SignedInRequest, slug: str, price_id: int) -> HttpResponse:
    membership = membership_get(request, slug)
    membership.require("manage_prices")
    price = get_object_or_404(PriceOverride, pk=price_id, account=membership.account)
    if request.method == "GET":
        return confirm_page(request, context=_context(membership), title=f"Delete the price of {price.model}?",
                            message=f"Calls to {price.provider}/{price.model} are priced from the catalogue again "
                                    "from now on; costs already recorded stay.",
                            confirm_label="Delete price", cancel_url=reverse("price_list", args=[slug]))
    price_override_delete(account=membership.account, actor=Actor.of_user(request.user), price=price)
    messages.success(request, f"Price for {price.provider}/{price.model} deleted.")
    return redirect("price_list", slug)
