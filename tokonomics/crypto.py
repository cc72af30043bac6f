"""AES-GCM encryption of secrets at rest (provider credentials, webhook and Slack URLs and secrets, OIDC
client secrets).

Each ciphertext is bound to the field and the row it belongs to (`secret_context`): its associated
data names the model, the field and the row's `secret_id`, so a blob copied into another row or another
field fails to decrypt. `v1:` ciphertexts (one associated data for all, before issue 13) are still read,
so rows written before the re-encrypting migration, or by a process not yet upgraded, keep working.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

_PREFIX = "v2:"
_LEGACY_PREFIX = "v1:"
_LEGACY_AAD = b"tokonomics:secret:v1"


class DecryptionError(Exception):
    """The ciphertext was not made with the configured TOKONOMICS_ENCRYPTION_KEY, or not for this field."""


def generate_encryption_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def secret_context(instance: Any, field: str) -> str:
    """`app.model.field:<secret_id>`: what a ciphertext stored in `instance.field` is bound to. The
    secret_id (a UUID set when the object is made) exists before the row has a primary key."""
    return f"{instance._meta.label_lower}.{field}:{instance.secret_id}"


def encrypt_secret(plaintext: str, *, context: str) -> str:
    return _seal(plaintext, _aad(context), _PREFIX)


def _seal(plaintext: str, aad: bytes, prefix: str) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(settings.TOKONOMICS_ENCRYPTION_KEY).encrypt(nonce, plaintext.encode(), aad)
    return prefix + base64.b64encode(nonce + sealed).decode()


def decrypt_secret(token: str, *, context: str) -> str:
    if token.startswith(_PREFIX):
        return _open(token[len(_PREFIX):], _aad(context))
    if token.startswith(_LEGACY_PREFIX):
        return _open(token[len(_LEGACY_PREFIX):], _LEGACY_AAD)
    raise DecryptionError("unknown ciphertext format")


def _aad(context: str) -> bytes:
    return b"tokonomics:secret:v2:" + context.encode()


def _open(encoded: str, aad: bytes) -> str:
    try:
        raw = base64.b64decode(encoded, validate=True)
        plain = AESGCM(settings.TOKONOMICS_ENCRYPTION_KEY).decrypt(raw[:12], raw[12:], aad)
    except (InvalidTag, binascii.Error, ValueError):
        raise DecryptionError(
            "ciphertext does not match TOKONOMICS_ENCRYPTION_KEY, or belongs to another field or row"
        ) from None
    return plain.decode()


def account_derived_key(account_id: int, *, purpose: str) -> bytes:
    """A 32-byte key of one account for one purpose (the response cache's encryption and its Redis key names),
    derived from TOKONOMICS_ENCRYPTION_KEY with HKDF-SHA256: nothing more to keep safe, and no account's key
    opens another's data. Cached: the derivation costs a few microseconds, a call may need it twice."""
    return _derived_key(settings.TOKONOMICS_ENCRYPTION_KEY, account_id, purpose)


@functools.lru_cache(maxsize=4096)
def _derived_key(master: bytes, account_id: int, purpose: str) -> bytes:
    info = f"tokonomics:{purpose}:account:{account_id}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


def secret_rebind(token: str, *, context: str) -> str:
    """A `v1:` ciphertext re-encrypted bound to `context` (the data migrations of issue 13); others as they are."""
    if not token.startswith(_LEGACY_PREFIX):
        return token
    return encrypt_secret(decrypt_secret(token, context=context), context=context)


def secret_unbind(token: str, *, context: str) -> str:
    """The reverse of secret_rebind, for a migration rolled back: a `v1:` ciphertext of the same secret."""
    if not token.startswith(_PREFIX):
        return token
    return _seal(decrypt_secret(token, context=context), _LEGACY_AAD, _LEGACY_PREFIX)


def rows_rebind(model: Any, fields: list[str], *, reverse: bool = False) -> None:
    """For a data migration: give every row of `model` a secret_id (forwards) and bind its ciphertexts
    in `fields` to it, or turn them back into `v1:` ones (reverse)."""
    import uuid

    for row in model.objects.all().iterator():
        if not reverse and row.secret_id is None:
            row.secret_id = uuid.uuid4()
        for field in fields:
            token = getattr(row, field)
            if token:
                convert = secret_unbind if reverse else secret_rebind
                setattr(row, field, convert(token, context=secret_context(row, field)))
        row.save(update_fields=[*fields, "secret_id"])
