"""The call log: a page of calls, one call's details, and the filtered calls as CSV or JSON Lines.
Every view starts from billing.accounts.access.membership_get: another account's calls are never found."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from billing.accounts.access import membership_get
from billing.calls import exports
from billing.calls.selectors import (
    EXACT_FILTERS,
    LAST,
    STATUSES,
    CallFilterError,
    Cursor,
    call_chunks,
    call_filters_parse,
    call_get,
    call_list,
)
from billing.models import Account
from tokonomics.db_router import reads_from_replica
from tokonomics.web_request import SignedInRequest

QUERY_PARAMS = ("last", "since", "until", *EXACT_FILTERS, "status", "q")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8"}


def _params(request: SignedInRequest) -> dict[str, str]:
    return {name: request.GET[name] for name in QUERY_PARAMS if request.GET.get(name)}


def _bad_filter(error: CallFilterError) -> HttpResponse:
    return HttpResponse(str(error), status=400, content_type="text/plain; charset=utf-8")


@require_GET
@login_required
@reads_from_replica
def call_list_view(request: SignedInRequest, slug: str) -> HttpResponse:
    account = _account(request, slug)
    params = _params(request)
    if any(not request.GET[name] for name in request.GET if name in QUERY_PARAMS):
        return redirect(f"{request.path}?{urlencode(params)}")  # the form's empty fields: a URL worth sharing
    try:
        filters = call_filters_parse(params, timezone=account.timezone)
        after = Cursor.decode(request.GET["after"]) if request.GET.get("after") else None
    except CallFilterError as error:
        return _bad_filter(error)
    page = call_list(account=account, filters=filters, after=after)
    query = urlencode(params)
    return render(request, "billing/calls.html", {
        "tab": "calls",
        "account": account,
        "params": params,
        "query": query,
        "chips": [(name, value, urlencode({k: v for k, v in params.items() if k != name}))
                  for name, value in params.items()],
        "calls": page.calls,
        "next_query": urlencode({**params, "after": page.next.encode()}) if page.next else None,
        "paged": after is not None,
        "keys": list(account.api_keys.order_by("name").values_list("name", flat=True)),
        "statuses": STATUSES,
        "ranges": LAST,
    })


@require_GET
@login_required
def call_detail_view(request: SignedInRequest, slug: str, call_id: int) -> HttpResponse:
    account = _account(request, slug)
    call = call_get(account=account, call_id=call_id)
    if call is None:
        raise Http404
    return render(request, "billing/call_detail.html", {
        "tab": "calls", "account": account, "call": call, "back": request.GET.get("back", ""),
    })


@require_GET
@login_required
def call_export_view(request: SignedInRequest, slug: str, kind: str) -> HttpResponse | StreamingHttpResponse:
    if kind not in CONTENT_TYPES:
        raise Http404
    account = _account(request, slug)
    params = _params(request)
    try:
        filters = call_filters_parse(params, timezone=account.timezone)
    except CallFilterError as error:
        return _bad_filter(error)
    lines = exports.csv_lines if kind == "csv" else exports.jsonl_lines
    # Under ASGI the body must be an async iterator, or Django reads it all into memory before sending it.
    blocks = lines(call_chunks(account=account, filters=filters))
    body = _off_the_loop(blocks) if isinstance(request, ASGIRequest) else blocks
    response = StreamingHttpResponse(body, content_type=CONTENT_TYPES[kind])
    filename = exports.export_filename(account=account, params=params, kind="csv" if kind == "csv" else "jsonl")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


async def _off_the_loop(lines: Iterator[str]) -> AsyncIterator[str]:
    """The export's blocks, each read (a chunk of calls from the ORM) in Django's sync thread."""
    while (block := await sync_to_async(_next_block)(lines)) is not None:
        yield block


def _next_block(lines: Iterator[str]) -> str | None:
    return next(lines, None)


def _account(request: SignedInRequest, slug: str) -> Account:
    return membership_get(request, slug).account
