from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from tokonomics.admin_writes import ServiceWritesAdmin, admin_actor
from tokonomics.web_request import SignedInRequest

from .models import ApiKey, ProviderEndpoint
from .services import (
    api_key_create,
    api_key_revoke,
    api_key_update,
    credential_host_problem,
    provider_endpoint_create,
    provider_endpoint_delete,
    provider_endpoint_update,
)


@admin.register(ApiKey)
class ApiKeyAdmin(ServiceWritesAdmin[ApiKey]):
    """Keys are created, changed and revoked through the services, audited; never deleted (revoking ends one,
    and keeps what its usage records point at)."""

    list_display = ["name", "prefix", "account", "environment", "status", "expires_at", "created_at"]
    list_filter = ["environment", "account", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "account__slug"]
    autocomplete_fields = ["account"]
    readonly_fields = ["prefix", "revoked_at", "created_at"]
    actions = ["revoke"]
    fields = [
        "account", "name", "prefix", "environment", "allowed_models", "expires_at", "revoked_at",
        "requests_per_minute", "tokens_per_minute", "max_concurrent", "created_at",
    ]

    @admin.display(description="Status")
    def status(self, obj: ApiKey) -> str:
        if obj.revoked_at:
            return "revoked"
        return "active" if obj.is_active else "expired"

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> ApiKey:
        key, plaintext = api_key_create(
            account=data["account"], actor=admin_actor(request), name=data["name"], environment=data["environment"],
            allowed_models=data["allowed_models"], expires_at=data["expires_at"],
            requests_per_minute=data["requests_per_minute"], tokens_per_minute=data["tokens_per_minute"],
            max_concurrent=data["max_concurrent"],
        )
        # Kept on the request only: response_add shows it once, nothing stores it.
        request._tokonomics_new_key = plaintext  # type: ignore[attr-defined]
        return key

    def service_update(self, request: HttpRequest, stored: ApiKey, changes: dict[str, Any]) -> None:
        api_key_update(account=stored.account, actor=admin_actor(request), key=stored, changes=changes)

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        plaintext = getattr(request, "_tokonomics_new_key", None)
        if plaintext is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "key": obj,
            "plaintext": plaintext,
            "title": "Copy your new key now",
        }
        response = TemplateResponse(request, "admin/proxy/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request: SignedInRequest, queryset: QuerySet[ApiKey]) -> None:
        # One service call per key: each revocation is audited in its own account, with the operator as actor.
        keys = list(queryset.filter(revoked_at__isnull=True).select_related("account"))
        for key in keys:
            api_key_revoke(account=key.account, actor=admin_actor(request), key=key)
        self.message_user(request, f"Revoked {len(keys)} key(s).")


class ProviderEndpointForm(forms.ModelForm):
    credential = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave empty to keep the stored credential.",
    )
    clear_credential = forms.BooleanField(required=False)

    class Meta:
        model = ProviderEndpoint
        fields = ["account", "slug", "wire_format", "base_url", "pricing_provider", "deployments"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("wire_format", "base_url"):  # a built-in slug defaults them, as in the web app
            if name in self.fields:
                self.fields[name].required = False

    def clean_deployments(self) -> Any:
        # An emptied field means no deployments; the model stores a mapping, never null.
        value = self.cleaned_data.get("deployments")
        return {} if value is None else value

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        # Runs before the form copies its fields onto the instance: instance.base_url is still the stored one.
        if self.instance.pk and (problem := credential_host_problem(
            old_url=self.instance.base_url,
            new_url=cleaned.get("base_url") or "", has_credential=self.instance.has_credential,
            credential_given=bool(cleaned.get("credential") or cleaned.get("clear_credential")),
        )):
            self.add_error("credential", problem)
        return cleaned


@admin.register(ProviderEndpoint)
class ProviderEndpointAdmin(ServiceWritesAdmin[ProviderEndpoint]):
    form = ProviderEndpointForm
    list_display = ["slug", "account", "wire_format", "base_url", "has_credential", "updated_at"]
    list_filter = ["wire_format", "account"]
    search_fields = ["slug", "base_url", "account__slug"]
    autocomplete_fields = ["account"]
    create_only_fields = ("account", "slug")

    @admin.display(boolean=True, description="Credential")
    def has_credential(self, obj: ProviderEndpoint) -> bool:
        return obj.has_credential

    def service_create(self, request: HttpRequest, data: dict[str, Any]) -> ProviderEndpoint:
        # Empty means "the built-in's default", as in the web app's form.
        return provider_endpoint_create(
            account=data["account"], actor=admin_actor(request), slug=data["slug"],
            wire_format=data["wire_format"] or None, base_url=data["base_url"] or None,
            pricing_provider=data["pricing_provider"] or None, deployments=data.get("deployments") or None,
            credential=data["credential"] or None,
        )

    def service_update(self, request: HttpRequest, stored: ProviderEndpoint, changes: dict[str, Any]) -> None:
        credential, clear = changes.pop("credential", ""), changes.pop("clear_credential", False)
        changes = {name: value for name, value in changes.items()
                   if value or name in ("pricing_provider", "deployments")}
        if clear:
            changes["credential"] = ""
        elif credential:
            changes["credential"] = credential
        if changes:
            provider_endpoint_update(account=stored.account, actor=admin_actor(request), endpoint=stored,
                                     changes=changes)

    def service_delete(self, request: HttpRequest, obj: ProviderEndpoint) -> None:
        provider_endpoint_delete(account=obj.account, actor=admin_actor(request), endpoint=obj)
