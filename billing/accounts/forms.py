"""Forms of the team, settings, invitation and sign-in pages. They parse and explain input; the rules
that involve other rows (seat limits, last owner, domain ownership) live in the services
(billing.accounts.team, billing.accounts.services, billing.sso.domains)."""

from __future__ import annotations

import functools
import re
import zoneinfo
from typing import Any

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import User
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from billing.models import (
    HEX_COLOUR_VALIDATOR,
    MAX_CACHE_ENTRY_BYTES,
    MAX_CACHE_TOTAL_BYTES,
    MAX_CACHE_TTL_SECONDS,
    Account,
    Seat,
    SsoConfig,
)
from billing.sso.services import password_login_blocked
from billing.usage.retention import MAX_RETENTION_DAYS

DOMAIN_PATTERN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
ROLE_HELP = ("Viewers see; members also create keys; admins also manage budgets, providers, alerts and seats; "
             "owners also plan, billing and branding.")


# The IANA database's areas: zones outside them are aliases and machinery ("Factory", "localtime", "posixrules",
# "Etc/GMT+5", "US/Eastern", "EST5EDT") that nobody should have to scroll past, and some that mean nothing.
TIMEZONE_AREAS = {"Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe", "Indian",
                  "Pacific"}


@functools.cache
def timezone_names() -> list[str]:
    """Real places' time zones, and UTC."""
    return ["UTC"] + sorted(name for name in zoneinfo.available_timezones() if name.split("/")[0] in TIMEZONE_AREAS)


def _timezone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in timezone_names()]


class DatalistInput(forms.TextInput):
    """A text input that suggests its field's choices as you type (a <datalist>); the field still validates."""

    choices: Any = ()

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> SafeString:
        list_id = f"{(attrs or {}).get('id') or 'id_' + name}_list"
        field = super().render(name, value, {**(attrs or {}), "list": list_id, "autocomplete": "off"}, renderer)
        options = format_html_join("", '<option value="{}"></option>', ((choice,) for choice, _ in self.choices))
        return format_html('{}<datalist id="{}">{}</datalist>', field, list_id, options)


class InviteForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Seat.Role.choices, initial=Seat.Role.MEMBER, help_text=ROLE_HELP)

    def __init__(self, *args: Any, roles: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        role = self.fields["role"]
        assert isinstance(role, forms.ChoiceField)
        role.choices = [(value, label) for value, label in Seat.Role.choices if value in roles]


class SeatRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Seat.Role.choices)


class AccountSettingsForm(forms.Form):
    name = forms.CharField(max_length=120)
    timezone = forms.ChoiceField(
        choices=_timezone_choices, widget=DatalistInput, label="Time zone",
        help_text="Type to search, e.g. Berlin or New_York. Budgets' calendar periods follow it.",
        error_messages={"invalid_choice": "%(value)s is not a time zone: pick one from the list, e.g. Europe/Berlin."},
    )
    retention_days = forms.IntegerField(min_value=1, max_value=MAX_RETENTION_DAYS, required=False,
                                        label="Usage retention (days)")
    on_redis_unavailable = forms.ChoiceField(choices=Account.RedisFallback.choices,
                                             label="When Redis is unavailable")
    allow_unmetered_routes = forms.BooleanField(
        required=False, help_text="Let routes the proxy cannot meter (files, batches…) through."
    )
    allow_unpriced_models = forms.BooleanField(
        required=False, help_text="Let calls a hard budget covers use models without a price; they are recorded "
                                  "with an unknown cost and count nothing against budgets."
    )

    def __init__(self, *args: Any, account: Account, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {name: getattr(account, name) for name in self.base_fields})
        super().__init__(*args, **kwargs)
        timezone = self.fields["timezone"]
        assert isinstance(timezone, forms.ChoiceField)
        if account.timezone not in timezone_names():  # an alias chosen before the list was trimmed stays valid
            timezone.choices = [*_timezone_choices(), (account.timezone, account.timezone)]
        plan = account.plan
        self.fields["retention_days"].help_text = (
            f"Empty: the {plan.name} plan's {plan.retention_days} days. "
            f"Any number of days from 1 to {MAX_RETENTION_DAYS} is accepted."
        )


class CacheSettingsForm(forms.Form):
    cache_enabled = forms.BooleanField(required=False, label="Response cache on")
    cache_ttl_seconds = forms.IntegerField(min_value=1, max_value=MAX_CACHE_TTL_SECONDS,
                                           label="Keep answers for (seconds)")
    cache_max_entry_bytes = forms.IntegerField(min_value=1024, max_value=MAX_CACHE_ENTRY_BYTES,
                                               label="Largest answer kept (bytes)")
    cache_max_total_bytes = forms.IntegerField(min_value=1024, max_value=MAX_CACHE_TOTAL_BYTES,
                                               label="All answers kept, at most (bytes)",
                                               help_text="Past it, the oldest answers are removed first.")
    cache_nonzero_temperature = forms.BooleanField(
        required=False, label="Also cache sampled calls (temperature above 0, or none given)",
        help_text="Off: only calls with temperature 0 (and embeddings) are answered from the cache, since a "
                  "sampled call would have been answered differently each time.",
    )

    def __init__(self, *args: Any, account: Account, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {name: getattr(account, name) for name in self.base_fields})
        super().__init__(*args, **kwargs)


class BrandingForm(forms.Form):
    brand_name = forms.CharField(max_length=60, required=False, label="Product name",
                                 help_text="Shown instead of Tokonomics.")
    brand_logo_url = forms.URLField(required=False, label="Logo URL", help_text="An image about 24 pixels high.")
    brand_accent_color = forms.CharField(
        max_length=7, required=False, label="Accent colour", validators=[HEX_COLOUR_VALIDATOR],
        widget=forms.TextInput(attrs={"placeholder": "#4f46e5", "pattern": "#[0-9a-fA-F]{6}"}),
    )

    def __init__(self, *args: Any, account: Account, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {name: getattr(account, name) for name in self.base_fields})
        super().__init__(*args, **kwargs)


class SsoConfigForm(forms.Form):
    # Unticked until someone turns it on: an empty form must not switch sign-in over by itself.
    enabled = forms.BooleanField(required=False, label="Single sign-on enabled")
    issuer = forms.URLField(max_length=300, help_text="e.g. https://login.acme.com/realms/main")
    client_id = forms.CharField(max_length=200, label="Client ID")
    client_secret = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave empty to keep the stored secret.",
    )
    allowed_domains = forms.CharField(label="Allowed email domains",
                                      help_text="Comma-separated, e.g. acme.com, acme.fr. A new domain signs "
                                                "people in once it is verified (below).")
    default_role = forms.ChoiceField(choices=SsoConfig.DefaultRole.choices, label="Role of new people",
                                     initial=SsoConfig.DefaultRole.VIEWER,
                                     help_text="The seat given to someone who signs in for the first time.")
    password_login_disabled = forms.BooleanField(
        required=False, label="Disable password sign-in",
        help_text="People of these domains who hold a seat here must then sign in through SSO.",
    )

    def __init__(self, *args: Any, config: SsoConfig | None, **kwargs: Any) -> None:
        if config is not None:
            initial = {name: getattr(config, name) for name in self.base_fields
                       if name not in {"client_secret", "allowed_domains"}}
            initial["allowed_domains"] = ", ".join(config.domains.values_list("domain", flat=True))
            kwargs.setdefault("initial", initial)
        super().__init__(*args, **kwargs)
        if config is not None and config.secret_encrypted:
            self.fields["client_secret"].widget.attrs["placeholder"] = "•••••••• (stored)"

    def clean_allowed_domains(self) -> list[str]:
        raw = re.split(r"[\s,;]+", self.cleaned_data["allowed_domains"].lower())
        domains = sorted({d.strip().lstrip("@") for d in raw if d.strip()})
        bad = [d for d in domains if not DOMAIN_PATTERN.match(d)]
        if bad:
            raise forms.ValidationError(f"Not a domain: {', '.join(bad)}. Use e.g. acme.com")
        if not domains:
            raise forms.ValidationError("Name at least one email domain.")
        return domains


class PasswordLoginForm(AuthenticationForm):
    """The password sign-in, refused to people whose account requires SSO. The address matches whatever its
    case: the username it belongs to is looked up, the throttle (billing.sso.login_throttle) lower-cases too."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That email and password do not match.",
    }

    def clean_username(self) -> str:
        typed = str(self.cleaned_data["username"]).strip()
        users = get_user_model().objects
        for lookup in ({"username__iexact": typed}, {"email__iexact": typed}):  # people made by hand may differ
            matches = list(users.filter(**lookup).values_list("username", flat=True)[:2])
            if len(matches) == 1:
                return str(matches[0])
        return typed

    def confirm_login_allowed(self, user: User) -> None:
        super().confirm_login_allowed(user)
        config = password_login_blocked(user=user)
        if config is not None:
            raise forms.ValidationError(
                f"{config.account.name} requires single sign-on: use “Sign in with your company account”.",
                code="sso_required",
            )


class InvitationSignUpForm(forms.Form):
    password1 = forms.CharField(label="Choose a password", strip=False,
                                widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    password2 = forms.CharField(label="Repeat it", strip=False,
                                widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    def __init__(self, *args: Any, email: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        first, second = cleaned.get("password1"), cleaned.get("password2")
        if first and second and first != second:
            self.add_error("password2", "The two passwords differ.")
        elif first:
            try:
                password_validation.validate_password(first, get_user_model()(username=self.email, email=self.email))
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return cleaned


class SsoStartForm(forms.Form):
    email = forms.EmailField(label="Work email", widget=forms.EmailInput(attrs={"autocomplete": "email"}))
