from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from billing.models import Seat


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    seats = list(Seat.objects.filter(user=request.user).select_related("account__plan").order_by("account__name"))
    if len(seats) == 1:
        return redirect("dashboard", seats[0].account.slug)
    return render(request, "billing/account_list.html", {"seats": seats})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
