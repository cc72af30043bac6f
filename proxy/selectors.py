"""Read-side queries of keys and provider endpoints, each scoped to one account."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet
from django.http import Http404

from .models import ApiKey, ProviderEndpoint, Route

if TYPE_CHECKING:
    from billing.models import Account


def api_key_list(*, account: Account) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(account=account).order_by("id")


def api_key_get(*, account: Account, key_id: int) -> ApiKey:
    key = api_key_list(account=account).filter(pk=key_id).first()
    if key is None:
        raise Http404(f"No key {key_id} in this account.")
    return key


def provider_endpoint_list(*, account: Account) -> QuerySet[ProviderEndpoint]:
    return ProviderEndpoint.objects.filter(account=account).order_by("id")


def provider_endpoint_get(*, account: Account, endpoint_id: int) -> ProviderEndpoint:
    endpoint = provider_endpoint_list(account=account).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise Http404(f"No provider endpoint {endpoint_id} in this account.")
    return endpoint


def route_list(*, account: Account) -> QuerySet[Route]:
    return Route.objects.filter(account=account).order_by("name")


def route_get(*, account: Account, route_id: int) -> Route:
    route = route_list(account=account).filter(pk=route_id).first()
    if route is None:
        raise Http404(f"No route {route_id} in this account.")
    return route
