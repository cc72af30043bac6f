import pytest
from django.db import connection
from django.test import override_settings

from alerts.models import AlertChannel
from billing.models import SsoConfig
from proxy.models import ProviderEndpoint
from tokonomics.crypto import DecryptionError, decrypt_secret, encrypt_secret, secret_context

pytestmark = pytest.mark.django_db

CONTEXT = "proxy.providerendpoint.credential_encrypted:7b0c2f1e-0000-4000-8000-000000000001"


def test_round_trip_and_fresh_nonce_each_time() -> None:
    first, second = encrypt_secret("sk-live-123", context=CONTEXT), encrypt_secret("sk-live-123", context=CONTEXT)
    assert first != second
    assert decrypt_secret(first, context=CONTEXT) == decrypt_secret(second, context=CONTEXT) == "sk-live-123"


def test_credential_is_not_in_the_database_in_plaintext(acme) -> None:
    endpoint = ProviderEndpoint(account=acme, slug="openai", wire_format="openai", base_url="https://api.openai.com/v1")
    endpoint.set_credential("sk-proj-VERYSECRET-0123456789")
    endpoint.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM proxy_providerendpoint")
        dump = repr(cursor.fetchall())
    assert "VERYSECRET" not in dump
    assert ProviderEndpoint.objects.get(pk=endpoint.pk).get_credential() == "sk-proj-VERYSECRET-0123456789"


def test_another_key_cannot_decrypt() -> None:
    token = encrypt_secret("sk-live-123", context=CONTEXT)
    with override_settings(TOKONOMICS_ENCRYPTION_KEY=b"\x01" * 32), pytest.raises(DecryptionError):
        decrypt_secret(token, context=CONTEXT)


def test_tampered_ciphertext_is_rejected() -> None:
    token = encrypt_secret("sk-live-123", context=CONTEXT)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(DecryptionError):
        decrypt_secret(tampered, context=CONTEXT)


def _endpoint(account, slug: str, credential: str) -> ProviderEndpoint:
    endpoint = ProviderEndpoint(account=account, slug=slug, wire_format="openai", base_url="https://api.example.com")
    endpoint.set_credential(credential)  # before the row has a pk
    endpoint.save()
    return endpoint


def test_a_ciphertext_copied_to_another_row_does_not_decrypt(acme, globex) -> None:
    victim = _endpoint(acme, "openai", "sk-acme-VICTIM")
    attacker = _endpoint(globex, "openai", "sk-globex-own")
    ProviderEndpoint.objects.filter(pk=attacker.pk).update(credential_encrypted=victim.credential_encrypted)
    attacker.refresh_from_db()
    with pytest.raises(DecryptionError):
        attacker.get_credential()
    assert ProviderEndpoint.objects.get(pk=victim.pk).get_credential() == "sk-acme-VICTIM"


def test_a_ciphertext_copied_to_another_field_does_not_decrypt(acme, plans) -> None:
    channel = AlertChannel(account=acme, name="hooks", kind="webhook", url="https://hooks.example.com/x")
    channel.set_secret("whsec_c2VjcmV0LWhvb2stYnl0ZXM=")
    channel.save()
    # Same row, another field: the secret moved into the URL column of the very same channel.
    channel.url_encrypted, channel.kind = channel.secret_encrypted, "slack"  # only Slack URLs are read from there
    with pytest.raises(DecryptionError):
        channel.destination_url()
    # Another model, same id: a provider credential moved into an SSO client secret.
    endpoint = _endpoint(acme, "openai", "sk-acme-VICTIM")
    config = SsoConfig(account=acme, issuer="https://idp.example", client_id="web", secret_id=endpoint.secret_id,
                       secret_encrypted=endpoint.credential_encrypted)
    with pytest.raises(DecryptionError):
        config.client_secret()


def test_ciphertexts_name_the_field_and_row_they_belong_to(acme) -> None:
    endpoint = _endpoint(acme, "openai", "sk-1")
    assert secret_context(endpoint, "credential_encrypted") == (
        f"proxy.providerendpoint.credential_encrypted:{endpoint.secret_id}")
    assert endpoint.credential_encrypted.startswith("v2:")
