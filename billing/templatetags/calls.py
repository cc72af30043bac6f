"""How a call's outcome reads in a list of calls (the dashboard's recent calls, the call log): its cost, or
why there is none, and which limit refused it."""

from __future__ import annotations

from django import template

register = template.Library()

# What each `denied_scope` a record can hold refused, in words.
DENIAL_SCOPES = {
    "account_budget": "the account budget",
    "tenant_budget": "the tenant budget",
    "feature_budget": "the feature budget",
    "key_budget": "the key budget",
    "session_budget": "the session budget",
    "plan": "the plan's monthly request limit",
    "rate_requests": "the key's requests-per-minute limit",
    "rate_tokens": "the key's tokens-per-minute limit",
    "rate_concurrency": "the key's concurrent-calls limit",
}


@register.filter
def denial_scope(scope: str) -> str:
    """`tenant_budget` as "the tenant budget"; a scope this version does not know, as it is stored."""
    return DENIAL_SCOPES.get(scope, scope.replace("_", " "))


@register.filter
def is_budget_denial(scope: str) -> bool:
    return scope.endswith("_budget")


@register.filter
def denial_scope_short(scope: str) -> str:
    """`tenant_budget` as "tenant budget", for a pill."""
    return denial_scope(scope).removeprefix("the ")
