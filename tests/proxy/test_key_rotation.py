"""A rotated key through the live proxy: the new secret works at once, the old one for the grace period the
person rotating chose and not a moment after; with no grace the old one stops at once."""

from __future__ import annotations

from datetime import timedelta

import httpx
from django.utils import timezone

from proxy.models import ApiKey
from proxy.services import api_key_rotate, config_version_bump
from tokonomics.audit import Actor

from ..support import CHAT, KEY, proxy_config_seen, wait_until


def _call(stack, secret: str) -> httpx.Response:
    return httpx.post(f"{stack.proxy}/proxy/openai/chat/completions", json=CHAT,
                      headers={"Authorization": f"Bearer {secret}"}, timeout=10)


def test_old_secret_works_during_the_grace_period_and_is_refused_after(stack) -> None:
    assert _call(stack, KEY).status_code == 200  # cached by the proxy before the rotation
    key, new = api_key_rotate(account=stack.account, actor=Actor.of_system("test"), key=stack.key,
                              grace=timedelta(hours=1))
    proxy_config_seen()
    assert _call(stack, new).status_code == 200
    assert _call(stack, KEY).status_code == 200  # the old one, inside its hour
    # The hour passes (moved in the database, as a later rotation or the clock would).
    ApiKey.objects.filter(pk=key.pk).update(previous_valid_until=timezone.now() - timedelta(seconds=1))
    config_version_bump()
    proxy_config_seen()
    refused = _call(stack, KEY)
    assert refused.status_code == 401 and "expired" in refused.text
    assert _call(stack, new).status_code == 200


def test_grace_that_ends_while_cached_refuses_the_old_secret_without_a_reload(stack) -> None:
    """The old secret's end is its entry's expiry, checked on every call: no configuration change needed."""
    key, new = api_key_rotate(account=stack.account, actor=Actor.of_system("test"), key=stack.key,
                              grace=timedelta(seconds=3))
    proxy_config_seen()
    assert _call(stack, KEY).status_code == 200
    wait_until(lambda: _call(stack, KEY).status_code == 401, timeout=8, interval=0.3)
    assert _call(stack, new).status_code == 200


def test_rotation_without_grace_stops_the_old_secret_at_once(stack) -> None:
    assert _call(stack, KEY).status_code == 200
    key, new = api_key_rotate(account=stack.account, actor=Actor.of_system("test"), key=stack.key, grace=timedelta(0))
    proxy_config_seen()
    assert _call(stack, KEY).status_code == 401
    assert _call(stack, new).status_code == 200
    key.refresh_from_db()
    assert key.previous_key_hash is None and key.name == "main"


def test_a_secret_replaced_from_a_config_file_ends_a_rotations_grace_too(acme) -> None:
    from proxy.directory import load_key
    from proxy.keys import hash_key
    from proxy.services import api_key_replace

    from ..support import make_key

    key = make_key(acme, KEY)
    key, rotated = api_key_rotate(account=acme, actor=Actor.of_system("test"), key=key, grace=timedelta(days=7))
    assert load_key(hash_key(KEY)) is not None  # in its grace week
    api_key_replace(account=acme, actor=Actor.of_system("test"), key=key, plaintext=KEY + "x")
    assert load_key(hash_key(KEY)) is None and load_key(hash_key(rotated)) is None
    assert load_key(hash_key(KEY + "x")).id == key.pk
