"""The directory's cache against configuration changes that land while a load is under way."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest

from proxy import directory
from proxy.directory import Directory
from proxy.keys import hash_key

from ..support import make_key

PLAINTEXT = "mk_test_directory_race_0123456789abcdef"


@pytest.mark.django_db(transaction=True)
def test_a_load_that_began_before_a_revocation_is_not_cached_as_fresh(acme, monkeypatch) -> None:
    key = make_key(acme, PLAINTEXT)
    read_done, may_return = threading.Event(), threading.Event()
    real_load = directory.load_key
    calls = []

    def slow_load(key_hash: str):
        entry = real_load(key_hash)  # the database is read here, before the revocation below
        calls.append(entry)
        if len(calls) == 1:
            read_done.set()
            assert may_return.wait(10)
        return entry

    monkeypatch.setattr(directory, "load_key", slow_load)

    async def scenario() -> tuple:
        cache = Directory()
        cache.observe_version(b"1")
        first = asyncio.ensure_future(cache.key(hash_key(PLAINTEXT)))
        assert await asyncio.to_thread(read_done.wait, 10)
        # The key is revoked and the poller sees the version move, all while the load is in flight.
        await asyncio.to_thread(key.__class__.objects.filter(pk=key.pk).update, revoked_at=datetime.now(UTC))
        cache.observe_version(b"2")
        may_return.set()
        await first
        return await cache.key(hash_key(PLAINTEXT))

    after = asyncio.run(scenario())
    assert after is not None and after.revoked


def test_made_up_keys_cannot_grow_the_cache_without_end(monkeypatch) -> None:
    monkeypatch.setattr(directory, "MAX_CACHED_ENTRIES", 50)
    monkeypatch.setattr(directory, "load_key", lambda key_hash: None)  # every key unknown

    async def main() -> int:
        cache = directory.Directory()
        for n in range(500):
            assert await cache.key(f"made-up-{n}") is None
        return len(cache._keys)

    assert asyncio.run(main()) <= 50
