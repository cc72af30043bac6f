"""The operator admin: every page loads for a superuser; a new key's plaintext shows once."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from billing.models import Invitation
from proxy.keys import hash_key
from proxy.models import ApiKey

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, superuser, acme):
    client.force_login(superuser)
    return client


def test_every_changelist_and_add_page_loads(operator) -> None:
    for model in admin.site._registry:
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        assert operator.get(changelist).status_code == 200, changelist
        add = reverse(f"admin:{meta.app_label}_{meta.model_name}_add")
        # Usage records and their dead letters are written by the ledger only, SSO domain claims and invitations
        # by their services, sign-in attempts by django-axes: their add page is forbidden.
        expected = 403 if meta.model_name in (
            "usagerecord", "usagedeadletter", "alertevent", "alertdelivery", "managementtoken", "ssodomain",
            "invitation", "accessattempt", "accessfailurelog", "accesslog",
        ) else 200
        assert operator.get(add).status_code == expected, add


def test_change_pages_load(operator, acme) -> None:
    assert operator.get(reverse("admin:billing_account_change", args=[acme.pk])).status_code == 200
    response = operator.get(reverse("admin:billing_account_changelist"), {"q": "acme"})
    assert b"Acme Inc" in response.content


def test_new_key_plaintext_is_shown_once(operator, acme) -> None:
    response = operator.post(
        reverse("admin:proxy_apikey_add"),
        {"account": acme.pk, "name": "ci", "environment": "production", "allowed_models": "[]"},
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    key = ApiKey.objects.get(name="ci")
    plaintext = response.context["plaintext"]
    assert plaintext.startswith("mk_") and hash_key(plaintext) == key.key_hash
    assert plaintext.encode() in response.content
    page = operator.get(reverse("admin:proxy_apikey_change", args=[key.pk]))
    assert plaintext.encode() not in page.content
    listing = operator.get(reverse("admin:proxy_apikey_changelist"))
    assert key.prefix.encode() in listing.content and plaintext.encode() not in listing.content


def test_provider_credential_is_write_only(operator, acme) -> None:
    url = reverse("admin:proxy_providerendpoint_add")
    operator.post(url, {"account": acme.pk, "slug": "openai", "wire_format": "openai",
                        "base_url": "https://api.openai.com/v1", "credential": "sk-WRITEONLY"})
    from proxy.models import ProviderEndpoint

    endpoint = ProviderEndpoint.objects.get(slug="openai")
    assert endpoint.get_credential() == "sk-WRITEONLY"
    page = operator.get(reverse("admin:proxy_providerendpoint_change", args=[endpoint.pk]))
    assert b"sk-WRITEONLY" not in page.content


def test_revoke_action_revokes(operator, acme) -> None:
    key = ApiKey.objects.create(account=acme, name="old", key_hash="x" * 64, prefix="mk_old")
    operator.post(reverse("admin:proxy_apikey_changelist"), {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_every_admin_action_that_changes_state_requires_a_permission() -> None:
    # Django offers an action without `permissions` to anyone who may view the changelist.
    for model, model_admin in admin.site._registry.items():
        if type(model_admin).__module__.split(".")[0] not in ("alerts", "billing", "proxy", "tokonomics"):
            continue  # third-party admins (django-axes) are theirs
        for action in model_admin.actions or ():
            func = getattr(model_admin, action) if isinstance(action, str) else action
            assert getattr(func, "allowed_permissions", None), f"{model.__name__} action {action} has no permissions"


def test_view_only_staff_cannot_approve_a_domain_claim(client, acme) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    from billing.models import SsoConfig, SsoDomain

    config = SsoConfig.objects.create(account=acme, issuer="https://login.acme.test", client_id="x")
    claim = SsoDomain.objects.create(config=config, domain="acme.test")
    viewer = get_user_model().objects.create_user("viewer@ops.test", "viewer@ops.test", "viewer pw 1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_ssodomain"))
    client.force_login(viewer)
    changelist = reverse("admin:billing_ssodomain_changelist")
    assert client.get(changelist).status_code == 200
    client.post(changelist, {"action": "approve", admin.helpers.ACTION_CHECKBOX_NAME: [claim.pk]})
    claim.refresh_from_db()
    assert claim.status == SsoDomain.Status.PENDING


def test_an_invitation_is_shown_read_only_and_without_its_token_hash(operator, acme) -> None:
    invitation = Invitation.objects.create(account=acme, email="erin@acme.test", role="member", token_hash="f" * 64,
                                           inviter_label="alice@acme.test", expires_at=timezone.now())
    listing = operator.get(reverse("admin:billing_invitation_changelist"))
    assert "erin@acme.test" in listing.content.decode()
    page = operator.get(reverse("admin:billing_invitation_change", args=[invitation.pk])).content.decode()
    assert "erin@acme.test" in page and "f" * 64 not in page and 'name="email"' not in page
    operator.post(reverse("admin:billing_invitation_change", args=[invitation.pk]), {"email": "x@evil.test"})
    invitation.refresh_from_db()
    assert invitation.email == "erin@acme.test"


def test_provider_deployments_are_edited_in_the_admin(operator, acme) -> None:
    from proxy.models import ProviderEndpoint

    form = {"account": acme.pk, "slug": "azure", "wire_format": "azure-openai",
            "base_url": "https://acme.openai.azure.com", "pricing_provider": "azure"}
    operator.post(reverse("admin:proxy_providerendpoint_add"), {**form, "deployments": '{"prod-chat": "gpt-4o"}'})
    endpoint = ProviderEndpoint.objects.get(slug="azure")
    assert endpoint.deployments == {"prod-chat": "gpt-4o"}
    change = reverse("admin:proxy_providerendpoint_change", args=[endpoint.pk])
    bad = operator.post(change, {**form, "deployments": '{"a/b": "gpt-4o"}'})
    assert bad.status_code == 200 and b"no &#x27;/&#x27;" in bad.content
    operator.post(change, {**form, "deployments": "{}"})
    endpoint.refresh_from_db()
    assert endpoint.deployments == {}
