"""Management tokens: who gets in, what a read-only token may do, and the command that creates them."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from billing.accounts.management_tokens import hash_token, is_well_formed
from billing.models import ManagementToken

from ..support import ApiClient, token_for
from .conftest import OPERATIONS, WRITES, AcmeObjects, account_snapshot, operation_id

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("operation", OPERATIONS, ids=operation_id)
def test_every_operation_needs_a_token(operation, acme_objects: AcmeObjects) -> None:
    method, path, body = operation
    response = ApiClient(None).request(method, path.format(**acme_objects.ids), body)
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    assert "Bearer mt_" in response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer mt_" + "x" * 43,  # well-formed, unknown
        "Bearer mk_live_0123456789abcdefghijklmnopqrstuvwx",  # a proxy key is not a management token
        "Bearer not-a-token",
        "Basic YWxpY2U6c2VjcmV0",
        "mt_" + "x" * 43,  # scheme missing
    ],
)
def test_unknown_or_malformed_tokens_get_401(header: str, acme) -> None:
    response = Client().get("/api/v1/account", headers={"Authorization": header})
    assert response.status_code == 401
    assert "detail" in response.json()


def test_revoked_and_expired_tokens_get_401(acme) -> None:
    revoked, expired, live = token_for(acme, name="revoked"), token_for(acme, name="expired"), token_for(acme)
    ManagementToken.objects.filter(token_hash=hash_token(revoked)).update(revoked_at=timezone.now())
    ManagementToken.objects.filter(token_hash=hash_token(expired)).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert ApiClient(revoked).get("account").status_code == 401
    assert ApiClient(expired).get("account").status_code == 401
    assert ApiClient(live).get("account").status_code == 200


def test_tokens_are_stored_hashed_with_a_visible_prefix(acme) -> None:
    plaintext = token_for(acme)
    assert is_well_formed(plaintext) and len(plaintext) >= 35
    token = ManagementToken.objects.get()
    assert token.token_hash == hash_token(plaintext)
    assert plaintext.startswith(token.prefix) and len(token.prefix) < 16
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM billing_managementtoken")
        dump = repr(cursor.fetchall())
    assert plaintext not in dump
    assert plaintext[len(token.prefix):] not in dump


def test_last_used_at_is_written_at_most_once_a_minute(acme_api: ApiClient) -> None:
    token = ManagementToken.objects.get()
    assert token.last_used_at is None
    acme_api.get("account")
    first = ManagementToken.objects.get().last_used_at
    assert first is not None
    acme_api.get("account")
    assert ManagementToken.objects.get().last_used_at == first
    ManagementToken.objects.update(last_used_at=first - timedelta(minutes=2))
    acme_api.get("account")
    assert ManagementToken.objects.get().last_used_at > first - timedelta(seconds=1)


@pytest.mark.parametrize("operation", WRITES, ids=operation_id)
def test_read_only_tokens_get_403_on_every_write(
    operation, acme_objects: AcmeObjects, acme_viewer_api: ApiClient
) -> None:
    method, path, body = operation
    before = account_snapshot()
    response = acme_viewer_api.request(method, path.format(**acme_objects.ids), body)
    assert response.status_code == 403
    assert "read-only" in response.json()["detail"]
    assert account_snapshot() == before


@pytest.mark.parametrize("operation", [op for op in OPERATIONS if op[0] == "GET"], ids=operation_id)
def test_read_only_tokens_may_read(operation, acme_objects: AcmeObjects, acme_viewer_api: ApiClient) -> None:
    method, path, _ = operation
    assert acme_viewer_api.request(method, path.format(**acme_objects.ids)).status_code == 200


def test_createmanagementtoken_prints_the_token_once(acme) -> None:
    out, err = StringIO(), StringIO()
    call_command("createmanagementtoken", "--account", "acme", "--name", "terraform", stdout=out, stderr=err)
    plaintext = out.getvalue().strip()
    assert is_well_formed(plaintext)
    assert "shown once" in err.getvalue() and plaintext not in err.getvalue()
    token = ManagementToken.objects.get(name="terraform")
    assert token.account == acme and token.role == "admin" and token.token_hash == hash_token(plaintext)
    assert ApiClient(plaintext).get("account").json()["slug"] == "acme"
    entry = acme.audit_entries.get(action="management_token.created")
    assert (entry.actor_kind, entry.actor_label) == ("system", "createmanagementtoken")
    assert entry.target == f"terraform ({token.prefix}…)"
    assert entry.after == {"name": "terraform", "prefix": token.prefix, "role": "admin", "expires_at": None}
    assert token.token_hash not in str(entry.before) + str(entry.after)


def test_createmanagementtoken_read_only(acme) -> None:
    out = StringIO()
    call_command("createmanagementtoken", "--account", "acme", "--name", "grafana", "--read-only", stdout=out,
                 stderr=StringIO())
    viewer = ApiClient(out.getvalue().strip())
    assert ManagementToken.objects.get(name="grafana").role == "viewer"
    assert viewer.get("keys").status_code == 200
    assert viewer.post("keys", {"name": "nope"}).status_code == 403


def test_createmanagementtoken_rejects_an_unknown_account(acme) -> None:
    with pytest.raises(CommandError, match="no account"):
        call_command("createmanagementtoken", "--account", "nope", "--name", "x", stdout=StringIO())


def test_openapi_schema_and_docs_load_without_a_token(db) -> None:
    schema = Client().get("/api/v1/openapi.json")
    assert schema.status_code == 200
    document = schema.json()
    assert document["info"]["title"] == "Tokonomics" and document["info"]["version"] == "1"
    assert "/api/v1/keys" in document["paths"]
    docs = Client().get("/api/v1/docs")
    assert docs.status_code == 200
    assert b"/api/v1/openapi.json" in docs.content


def test_schema_lists_exactly_the_tested_operations(db) -> None:
    document = Client().get("/api/v1/openapi.json").json()
    in_schema = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    tested = {(method, path.split("?")[0]) for method, path, _ in OPERATIONS}
    assert in_schema == tested


def test_unknown_paths_and_methods_answer_json(acme_api: ApiClient, acme_key) -> None:
    missing = acme_api.get("no-such-thing")
    assert missing.status_code == 404 and "No such endpoint" in missing.json()["detail"]
    wrong_method = acme_api.delete(f"keys/{acme_key.pk}")  # keys are revoked, never deleted
    assert wrong_method.status_code == 405
    assert wrong_method["Content-Type"].startswith("application/json")
    assert "not allowed" in wrong_method.json()["detail"]


def test_a_body_that_is_not_json_gets_a_json_400(acme_api: ApiClient) -> None:
    response = Client().generic("POST", "/api/v1/keys", b"{not json", content_type="application/json",
                                headers={"Authorization": f"Bearer {acme_api.token}"})
    assert response.status_code == 400
    assert response.json()["detail"]
