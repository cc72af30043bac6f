"""REST API: keys, provider endpoints and routes of the caller's account."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Router, Status

from tokonomics.api_common import ObjectId, caller_account, caller_actor, responses

from . import selectors, services
from .models import ApiKey, ProviderEndpoint, Route
from .schemas import (
    KeyCreatedOut,
    KeyIn,
    KeyOut,
    KeyPatch,
    ProviderIn,
    ProviderOut,
    ProviderPatch,
    RouteIn,
    RouteOut,
    RoutePatch,
)

router = Router()


@router.get("/keys", response=responses({200: list[KeyOut]}), tags=["keys"])
def key_list(request: HttpRequest) -> list[ApiKey]:
    return list(selectors.api_key_list(account=caller_account(request)))


@router.get("/keys/{key_id}", response=responses({200: KeyOut}), tags=["keys"])
def key_get(request: HttpRequest, key_id: ObjectId) -> ApiKey:
    return selectors.api_key_get(account=caller_account(request), key_id=key_id)


@router.post("/keys", response=responses({201: KeyCreatedOut}), tags=["keys"])
def key_create(request: HttpRequest, response: HttpResponse, payload: KeyIn) -> Status[KeyCreatedOut]:
    """Create a key. The plaintext is in this response only; afterwards only its prefix is shown."""
    key, plaintext = services.api_key_create(account=caller_account(request), actor=caller_actor(request),
                                             **payload.model_dump())
    response["Cache-Control"] = "no-store"
    return Status(201, KeyCreatedOut.model_validate(key, context={"plaintext": plaintext}))


@router.patch("/keys/{key_id}", response=responses({200: KeyOut}), tags=["keys"])
def key_update(request: HttpRequest, key_id: ObjectId, payload: KeyPatch) -> ApiKey:
    account = caller_account(request)
    key = selectors.api_key_get(account=account, key_id=key_id)
    return services.api_key_update(account=account, actor=caller_actor(request), key=key,
                                   changes=payload.model_dump(exclude_unset=True))


@router.post("/keys/{key_id}/revoke", response=responses({200: KeyOut}), tags=["keys"])
def key_revoke(request: HttpRequest, key_id: ObjectId) -> ApiKey:
    """Revoke a key: the proxy refuses it within a second. Keys are never deleted, so usage keeps its key."""
    account = caller_account(request)
    key = selectors.api_key_get(account=account, key_id=key_id)
    return services.api_key_revoke(account=account, actor=caller_actor(request), key=key)


@router.get("/providers", response=responses({200: list[ProviderOut]}), tags=["providers"])
def provider_list(request: HttpRequest) -> list[ProviderEndpoint]:
    return list(selectors.provider_endpoint_list(account=caller_account(request)))


@router.get("/providers/{endpoint_id}", response=responses({200: ProviderOut}), tags=["providers"])
def provider_get(request: HttpRequest, endpoint_id: ObjectId) -> ProviderEndpoint:
    return selectors.provider_endpoint_get(account=caller_account(request), endpoint_id=endpoint_id)


@router.post("/providers", response=responses({201: ProviderOut}), tags=["providers"])
def provider_create(request: HttpRequest, payload: ProviderIn) -> Status[ProviderEndpoint]:
    """Add a provider endpoint. A built-in slug needs no base_url or wire_format; the credential is write-only."""
    endpoint = services.provider_endpoint_create(account=caller_account(request), actor=caller_actor(request),
                                                 **payload.model_dump())
    return Status(201, endpoint)


@router.patch("/providers/{endpoint_id}", response=responses({200: ProviderOut}), tags=["providers"])
def provider_update(request: HttpRequest, endpoint_id: ObjectId, payload: ProviderPatch) -> ProviderEndpoint:
    account = caller_account(request)
    endpoint = selectors.provider_endpoint_get(account=account, endpoint_id=endpoint_id)
    return services.provider_endpoint_update(account=account, actor=caller_actor(request), endpoint=endpoint,
                                             changes=payload.model_dump(exclude_unset=True))


@router.delete("/providers/{endpoint_id}", response=responses({204: None}), tags=["providers"])
def provider_delete(request: HttpRequest, endpoint_id: ObjectId) -> Status[None]:
    account = caller_account(request)
    endpoint = selectors.provider_endpoint_get(account=account, endpoint_id=endpoint_id)
    services.provider_endpoint_delete(account=account, actor=caller_actor(request), endpoint=endpoint)
    return Status(204, None)


@router.get("/routes", response=responses({200: list[RouteOut]}), tags=["routes"])
def route_list(request: HttpRequest) -> list[Route]:
    return list(selectors.route_list(account=caller_account(request)))


@router.get("/routes/{route_id}", response=responses({200: RouteOut}), tags=["routes"])
def route_get(request: HttpRequest, route_id: ObjectId) -> Route:
    return selectors.route_get(account=caller_account(request), route_id=route_id)


@router.post("/routes", response=responses({201: RouteOut}), tags=["routes"])
def route_create(request: HttpRequest, payload: RouteIn) -> Status[Route]:
    """Add a route: calls naming model `name` are served by its targets, with retries and fallbacks."""
    route = services.route_create(account=caller_account(request), actor=caller_actor(request),
                                  **payload.model_dump())
    return Status(201, route)


@router.patch("/routes/{route_id}", response=responses({200: RouteOut}), tags=["routes"])
def route_update(request: HttpRequest, route_id: ObjectId, payload: RoutePatch) -> Route:
    account = caller_account(request)
    route = selectors.route_get(account=account, route_id=route_id)
    return services.route_update(account=account, actor=caller_actor(request), route=route,
                                 changes=payload.model_dump(exclude_unset=True))


@router.delete("/routes/{route_id}", response=responses({204: None}), tags=["routes"])
def route_delete(request: HttpRequest, route_id: ObjectId) -> Status[None]:
    account = caller_account(request)
    route = selectors.route_get(account=account, route_id=route_id)
    services.route_delete(account=account, actor=caller_actor(request), route=route)
    return Status(204, None)
