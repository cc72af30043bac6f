from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from billing.models import Seat
from billing.sso.services import sso_required_configs
from billing.sso.session_scope import session_may_open
from tokonomics.web_request import SignedInRequest


@require_GET
@login_required
def home(request: SignedInRequest) -> HttpResponse:
    seats = list(Seat.objects.filter(user=request.user).select_related("account__plan").order_by("account__name"))
    # An SSO session lists the accounts it did not open as sign-in prompts, never as links.
    opened = [seat for seat in seats if session_may_open(request, account_id=seat.account_id)]
    if len(seats) == 1 and opened:
        return redirect("dashboard", seats[0].account.slug)
    locked = [seat for seat in seats if seat not in opened]
    required = {config.account_id for config in sso_required_configs(user=request.user)} if locked else set()
    return render(request, "billing/account_list.html",
                  {"seats": opened, "locked_seats": locked, "sso_required": required})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
