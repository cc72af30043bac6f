"""REST API: alert channels and alert rules of the caller's account."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Router, Status

from tokonomics.api_common import ObjectId, caller_account, caller_actor, responses

from . import selectors, services
from .models import AlertChannel, AlertRule
from .schemas import (
    AlertChannelCreatedOut,
    AlertChannelIn,
    AlertChannelOut,
    AlertChannelPatch,
    AlertRuleIn,
    AlertRuleOut,
    AlertRulePatch,
)

router = Router()


@router.get("/alert-channels", response=responses({200: list[AlertChannelOut]}), tags=["alerts"])
def alert_channel_list(request: HttpRequest) -> list[AlertChannel]:
    return list(selectors.alert_channel_list(account=caller_account(request)))


@router.get("/alert-channels/{channel_id}", response=responses({200: AlertChannelOut}), tags=["alerts"])
def alert_channel_get(request: HttpRequest, channel_id: ObjectId) -> AlertChannel:
    return selectors.alert_channel_get(account=caller_account(request), channel_id=channel_id)


@router.post("/alert-channels", response=responses({201: AlertChannelCreatedOut}), tags=["alerts"])
def alert_channel_create(
    request: HttpRequest, response: HttpResponse, payload: AlertChannelIn
) -> Status[AlertChannelCreatedOut]:
    """Add a channel. A webhook created without a secret gets one, returned in this response only."""
    channel, generated_secret = services.alert_channel_create(account=caller_account(request),
                                                              actor=caller_actor(request), **payload.model_dump())
    response["Cache-Control"] = "no-store"
    created = AlertChannelCreatedOut.model_validate(channel, context={"generated_secret": generated_secret})
    return Status(201, created)


@router.patch("/alert-channels/{channel_id}", response=responses({200: AlertChannelOut}), tags=["alerts"])
def alert_channel_update(request: HttpRequest, channel_id: ObjectId, payload: AlertChannelPatch) -> AlertChannel:
    account = caller_account(request)
    channel = selectors.alert_channel_get(account=account, channel_id=channel_id)
    return services.alert_channel_update(account=account, actor=caller_actor(request), channel=channel,
                                         changes=payload.model_dump(exclude_unset=True))


@router.delete("/alert-channels/{channel_id}", response=responses({204: None}), tags=["alerts"])
def alert_channel_delete(request: HttpRequest, channel_id: ObjectId) -> Status[None]:
    account = caller_account(request)
    channel = selectors.alert_channel_get(account=account, channel_id=channel_id)
    services.alert_channel_delete(account=account, actor=caller_actor(request), channel=channel)
    return Status(204, None)


@router.get("/alert-rules", response=responses({200: list[AlertRuleOut]}), tags=["alerts"])
def alert_rule_list(request: HttpRequest) -> list[AlertRule]:
    return list(selectors.alert_rule_list(account=caller_account(request)))


@router.get("/alert-rules/{rule_id}", response=responses({200: AlertRuleOut}), tags=["alerts"])
def alert_rule_get(request: HttpRequest, rule_id: ObjectId) -> AlertRule:
    return selectors.alert_rule_get(account=caller_account(request), rule_id=rule_id)


@router.post("/alert-rules", response=responses({201: AlertRuleOut}), tags=["alerts"])
def alert_rule_create(request: HttpRequest, payload: AlertRuleIn) -> Status[AlertRule]:
    """Add a burn-rate rule. The plan's max_alert_rules caps how many an account has (403 beyond it)."""
    rule = services.alert_rule_create(account=caller_account(request), actor=caller_actor(request),
                                      **payload.model_dump())
    return Status(201, rule)


@router.patch("/alert-rules/{rule_id}", response=responses({200: AlertRuleOut}), tags=["alerts"])
def alert_rule_update(request: HttpRequest, rule_id: ObjectId, payload: AlertRulePatch) -> AlertRule:
    account = caller_account(request)
    rule = selectors.alert_rule_get(account=account, rule_id=rule_id)
    return services.alert_rule_update(account=account, actor=caller_actor(request), rule=rule,
                                      changes=payload.model_dump(exclude_unset=True))


@router.delete("/alert-rules/{rule_id}", response=responses({204: None}), tags=["alerts"])
def alert_rule_delete(request: HttpRequest, rule_id: ObjectId) -> Status[None]:
    account = caller_account(request)
    rule = selectors.alert_rule_get(account=account, rule_id=rule_id)
    services.alert_rule_delete(account=account, actor=caller_actor(request), rule=rule)
    return Status(204, None)
