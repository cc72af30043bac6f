"""Management tokens for the REST API: `mt_` + URL-safe random characters, stored as a SHA-256 hash.

Same reasoning as proxy/keys.py: 256 random bits need no slow KDF, and every API request hashes one.
"""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_PREFIX = "mt_"  # noqa: S105 -- the visible prefix of every token, not a secret
TOKEN_PATTERN = re.compile(r"^mt_[A-Za-z0-9_-]{32,}$")
VISIBLE_PREFIX_LENGTH = 11  # "mt_" + 8 characters


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def is_well_formed(token: str) -> bool:
    return TOKEN_PATTERN.match(token) is not None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def visible_prefix(token: str) -> str:
    return token[:VISIBLE_PREFIX_LENGTH]
