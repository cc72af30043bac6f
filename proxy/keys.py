"""Tokonomics API keys: `mk_` + URL-safe random characters, stored as a SHA-256 hash.

A fast hash is right here: the keys carry 256 bits of randomness, so there is nothing for a
slow KDF to protect, and the proxy hashes on every request.
"""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "mk_"
KEY_PATTERN = re.compile(r"^mk_[A-Za-z0-9_-]{32,}$")
VISIBLE_PREFIX_LENGTH = 11  # "mk_" + 8 characters: enough to tell keys apart in a list


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def is_well_formed(key: str) -> bool:
    return KEY_PATTERN.match(key) is not None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def visible_prefix(key: str) -> str:
    return key[:VISIBLE_PREFIX_LENGTH]
