import pytest
from django.db import connection
from django.test import override_settings

from proxy.models import ProviderEndpoint
from tokonomics.crypto import DecryptionError, decrypt_secret, encrypt_secret

pytestmark = pytest.mark.django_db


def test_round_trip_and_fresh_nonce_each_time() -> None:
    first, second = encrypt_secret("sk-live-123"), encrypt_secret("sk-live-123")
    assert first != second
    assert decrypt_secret(first) == decrypt_secret(second) == "sk-live-123"


def test_credential_is_not_in_the_database_in_plaintext(acme) -> None:  # type: ignore[no-untyped-def]
    endpoint = ProviderEndpoint(account=acme, slug="openai", wire_format="openai", base_url="https://api.openai.com/v1")
    endpoint.set_credential("sk-proj-VERYSECRET-0123456789")
    endpoint.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM proxy_providerendpoint")
        dump = repr(cursor.fetchall())
    assert "VERYSECRET" not in dump
    assert ProviderEndpoint.objects.get(pk=endpoint.pk).get_credential() == "sk-proj-VERYSECRET-0123456789"


def test_another_key_cannot_decrypt() -> None:
    token = encrypt_secret("sk-live-123")
    with override_settings(TOKONOMICS_ENCRYPTION_KEY=b"\x01" * 32), pytest.raises(DecryptionError):
        decrypt_secret(token)


def test_tampered_ciphertext_is_rejected() -> None:
    token = encrypt_secret("sk-live-123")
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(DecryptionError):
        decrypt_secret(tampered)
