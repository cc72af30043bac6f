"""TOKONOMICS_ENCRYPTION_KEY: standard or URL-safe base64 of 32 bytes (what Fernet.generate_key() and
most secret stores give); anything else stops the start with a message saying what is wrong."""

from __future__ import annotations

import base64

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from tokonomics.settings import encryption_key_parse

# 32 bytes whose base64 holds both alphabets' distinctive characters (+/ vs -_).
RAW = bytes.fromhex("fbff" * 16)


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode,
                                    lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"="),
                                    lambda raw: base64.b64encode(raw).rstrip(b"=")])
def test_both_alphabets_with_or_without_padding_are_accepted(encode) -> None:
    assert encryption_key_parse(" " + encode(RAW).decode() + "\n") == RAW


def test_a_fernet_key_is_accepted() -> None:
    key = Fernet.generate_key()
    assert encryption_key_parse(key.decode()) == base64.urlsafe_b64decode(key)


@pytest.mark.parametrize(("raw", "message"), [
    ("not base64 at all!", "not valid base64"),
    (base64.b64encode(b"\x01" * 16).decode(), "32 bytes, not 16"),
    ("ab" * 32, "32 bytes, not 48"),  # 64 hex digits are not base64 of 32 bytes
    (base64.b64encode(RAW).decode()[:10] + "-_" + base64.b64encode(RAW).decode()[12:], "mixes"),
])
def test_a_malformed_or_wrong_length_key_is_refused_clearly(raw: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message) as error:
        encryption_key_parse(raw)
    assert "TOKONOMICS_ENCRYPTION_KEY" in str(error.value)
