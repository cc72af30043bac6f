"""The sessions page: the account's agent runs (X-Tokonomics-Session) with their spend, calls, duration and
models. Scoped by billing.accounts.access.membership_get: another account's sessions are never found."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing.accounts.access import membership_get
from billing.sessions.selectors import SESSION_LIST_DAYS, session_list
from tokonomics.db_router import reads_from_replica
from tokonomics.web_request import SignedInRequest


@require_GET
@login_required
@reads_from_replica
def session_list_view(request: SignedInRequest, slug: str) -> HttpResponse:
    account = membership_get(request, slug).account
    return render(request, "billing/sessions.html", {
        "tab": "calls", "account": account, "sessions": session_list(account=account), "days": SESSION_LIST_DAYS,
    })
