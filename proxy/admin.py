from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from tokonomics.audit import Actor
from tokonomics.web_request import SignedInRequest

from .keys import generate_key, hash_key, visible_prefix
from .models import ApiKey, ProviderEndpoint
from .services import api_key_revoke, credential_host_problem


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "account", "environment", "status", "expires_at", "created_at"]
    list_filter = ["environment", "account", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "account__slug"]
    autocomplete_fields = ["account"]
    readonly_fields = ["prefix", "created_at"]
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

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        if not change:
            plaintext = generate_key()
            obj.key_hash = hash_key(plaintext)
            obj.prefix = visible_prefix(plaintext)
            # Kept on the request only: response_add shows it once, nothing stores it.
            request._tokonomics_new_key = plaintext  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

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
            api_key_revoke(account=key.account, actor=Actor.of_user(request.user), key=key)
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
        fields = ["account", "slug", "wire_format", "base_url", "pricing_provider"]

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
class ProviderEndpointAdmin(admin.ModelAdmin):
    form = ProviderEndpointForm
    list_display = ["slug", "account", "wire_format", "base_url", "has_credential", "updated_at"]
    list_filter = ["wire_format", "account"]
    search_fields = ["slug", "base_url", "account__slug"]
    autocomplete_fields = ["account"]

    @admin.display(boolean=True, description="Credential")
    def has_credential(self, obj: ProviderEndpoint) -> bool:
        return obj.has_credential

    def save_model(self, request: HttpRequest, obj: ProviderEndpoint, form: forms.ModelForm, change: bool) -> None:
        if form.cleaned_data.get("clear_credential"):
            obj.set_credential("")
        elif form.cleaned_data.get("credential"):
            obj.set_credential(form.cleaned_data["credential"])
        super().save_model(request, obj, form, change)
