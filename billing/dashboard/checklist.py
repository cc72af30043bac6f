"""The first-run checklist an account's dashboard shows until it is complete: provider → key → first call →
budget → alert. Each step is ticked from the account's own data, so there is no state of its own to keep."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.urls import reverse

from billing.models import Account, Budget, UsageRecord
from proxy.models import ApiKey, ProviderEndpoint


@dataclass(frozen=True)
class Step:
    name: str
    done: bool
    url: str  # where to do it


@dataclass(frozen=True)
class Checklist:
    steps: list[Step]
    proxy_url: str  # the base URL an SDK is given for the account's first provider
    provider_slug: str
    wire_format: str

    @property
    def complete(self) -> bool:
        return all(step.done for step in self.steps)


def checklist_get(*, account: Account) -> Checklist:
    provider = ProviderEndpoint.objects.filter(account=account).order_by("pk").first()
    slug = account.slug
    steps = [
        Step("Add a provider", provider is not None, reverse("provider_list", args=[slug])),
        Step("Create a key", ApiKey.objects.filter(account=account, revoked_at__isnull=True).exists(),
             reverse("key_list", args=[slug])),
        Step("Make a first call", UsageRecord.objects.filter(account=account).exists(),
             reverse("key_list", args=[slug])),
        Step("Set a budget", Budget.objects.filter(account=account).exists(), reverse("budget_list", args=[slug])),
        # Through the reverse relation: billing does not import alerts (the import layers).
        Step("Add an alert channel", account.alert_channels.exists(), reverse("alert_settings", args=[slug])),
    ]
    provider_slug = provider.slug if provider else "openai"
    return Checklist(steps=steps, proxy_url=f"{settings.SITE_URL}/proxy/{provider_slug}",
                     provider_slug=provider_slug, wire_format=provider.wire_format if provider else "openai")
