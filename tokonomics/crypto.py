"""AES-GCM encryption of secrets at rest (provider credentials, webhook and OIDC secrets)."""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

_PREFIX = "v1:"
# Binds ciphertexts to this purpose, so a blob copied into another kind of field fails to decrypt.
_AAD = b"tokonomics:secret:v1"


class DecryptionError(Exception):
    """The ciphertext was not made with the configured TOKONOMICS_ENCRYPTION_KEY."""


def generate_encryption_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def encrypt_secret(plaintext: str) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(settings.TOKONOMICS_ENCRYPTION_KEY).encrypt(nonce, plaintext.encode(), _AAD)
    return _PREFIX + base64.b64encode(nonce + sealed).decode()


def decrypt_secret(token: str) -> str:
    if not token.startswith(_PREFIX):
        raise DecryptionError("unknown ciphertext format")
    raw = base64.b64decode(token[len(_PREFIX) :])
    try:
        plain = AESGCM(settings.TOKONOMICS_ENCRYPTION_KEY).decrypt(raw[:12], raw[12:], _AAD)
    except InvalidTag:
        raise DecryptionError("ciphertext does not match TOKONOMICS_ENCRYPTION_KEY") from None
    return plain.decode()
