"""The proxy's pipelined Redis connection: replies matched to their commands under concurrency and
cancellation, the script cache lost and refilled, password, database, TLS and unix-socket URLs, and a
Redis that stops answering, dies or comes back. Every test runs on asyncio's loop and on uvloop (what
production serves with)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy.redis_pipeline import LuaScript, PipelinedRedis

from ..support import PrivateRedis, free_port

Check = Callable[[], Awaitable[None]]
BUSY = LuaScript.of("local x = 0 for i = 1, tonumber(ARGV[1]) do x = x + i end return ARGV[2]")
ECHO_KEYS = LuaScript.of("return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}")


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Check], None]:
    def runner(check: Check) -> None:
        (asyncio.run if request.param == "asyncio" else uvloop.run)(check())

    return runner


def test_concurrent_commands_each_get_their_own_reply(run: Callable[[Check], None]) -> None:
    async def check() -> None:
        client = PipelinedRedis(settings.REDIS_URL, timeout=5)
        try:
            replies = await asyncio.gather(*(
                client.evalsha(ECHO_KEYS, [f"tk:test:pipeline:{i}"], [f"v{i}", i]) for i in range(2_000)
            ))
            assert replies == [[f"tk:test:pipeline:{i}".encode(), f"v{i}".encode(), i + 1] for i in range(2_000)]
        finally:
            await client.close()

    run(check)


def test_a_caller_that_gives_up_does_not_shift_the_replies(run: Callable[[Check], None],
                                                           private_redis: PrivateRedis) -> None:
    async def check() -> None:
        # A Redis of its own: the busy script blocks its server for a third of a second, which on the shared
        # one timed out the other test worker's proxies (0.25 s) and opened their Redis breaker.
        client = PipelinedRedis(private_redis.url, timeout=5)
        try:
            # ~0.3 s of Lua (3 M iterations took 15 ms: a loaded machine's 10 ms sleep outlasted it)
            slow = asyncio.ensure_future(client.evalsha(BUSY, [], [40_000_000, "slow"]))
            await asyncio.sleep(0.01)  # written, and Redis is busy running it
            slow.cancel()
            after = await asyncio.gather(client.execute("ECHO", "first"), client.execute("ECHO", "second"))
            assert after == [b"first", b"second"]
            assert slow.cancelled()
        finally:
            await client.close()

    run(check)


def test_an_error_reply_raises_and_the_connection_goes_on(run: Callable[[Check], None]) -> None:
    async def check() -> None:
        client = PipelinedRedis(settings.REDIS_URL, timeout=5)
        try:
            with pytest.raises(ResponseError, match="unknown command"):
                await client.execute("NO-SUCH-COMMAND")
            assert await client.execute("ECHO", "still here") == b"still here"
        finally:
            await client.close()

    run(check)


def test_a_lost_script_cache_is_refilled(run: Callable[[Check], None], private_redis: PrivateRedis) -> None:
    async def check() -> None:
        client = PipelinedRedis(private_redis.url, timeout=5)
        try:
            assert await client.evalsha(BUSY, [], [1, "before"]) == b"before"
            await client.execute("SCRIPT", "FLUSH")
            assert await client.evalsha(BUSY, [], [1, "after"]) == b"after"
            assert await client.execute("SCRIPT", "EXISTS", BUSY.sha) == [1]
        finally:
            await client.close()

    run(check)


def test_password_and_database_from_the_url(run: Callable[[Check], None]) -> None:
    server = PrivateRedis(password="s3cret")
    server.start()

    async def check() -> None:
        client = PipelinedRedis(f"redis://:s3cret@127.0.0.1:{server.port}/3", timeout=5)
        await client.execute("SET", "where", "db3")
        await client.close()
        wrong = PipelinedRedis(f"redis://:wrong@127.0.0.1:{server.port}/0", timeout=5)
        with pytest.raises(RedisConnectionError, match="refused the connection"):
            await wrong.execute("PING")
        await wrong.close()

    try:
        run(check)
        assert server.client(db=3).get("where") == b"db3"
        assert server.client(db=0).get("where") is None
    finally:
        server.stop()


def test_acl_user_from_the_url(run: Callable[[Check], None], private_redis: PrivateRedis) -> None:
    private_redis.client().acl_setuser("proxy", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"])

    async def check() -> None:
        client = PipelinedRedis(f"redis://proxy:pw@127.0.0.1:{private_redis.port}/0", timeout=5)
        try:
            assert await client.execute("ACL", "WHOAMI") == b"proxy"
        finally:
            await client.close()

    run(check)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    return cert, key


def test_tls(run: Callable[[Check], None], certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    tls_port = free_port()
    server = PrivateRedis(["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                           "--tls-auth-clients", "no"])
    server.start()

    async def check() -> None:
        verified = PipelinedRedis(f"rediss://localhost:{tls_port}/0?ssl_ca_certs={cert}", timeout=5)
        assert await verified.execute("ECHO", "over tls") == b"over tls"
        await verified.close()
        unverified = PipelinedRedis(f"rediss://127.0.0.1:{tls_port}/0?ssl_cert_reqs=none", timeout=5)
        assert await unverified.execute("ECHO", "unverified") == b"unverified"
        await unverified.close()
        # A certificate nobody vouches for is refused by default.
        strict = PipelinedRedis(f"rediss://localhost:{tls_port}/0", timeout=5)
        with pytest.raises(RedisConnectionError, match="certificate"):
            await strict.execute("PING")

    try:
        run(check)
    finally:
        server.stop()


def test_unix_socket(run: Callable[[Check], None], tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    server = PrivateRedis(["--unixsocket", str(path), "--unixsocketperm", "700"])
    server.start()

    async def check() -> None:
        client = PipelinedRedis(f"unix://{path}?db=2", timeout=5)
        await client.execute("SET", "via", "socket")
        await client.close()

    try:
        run(check)
        assert server.client(db=2).get("via") == b"socket"
    finally:
        server.stop()


def test_a_redis_that_stops_answering_times_out_every_waiting_command_then_recovers(
    run: Callable[[Check], None], private_redis: PrivateRedis
) -> None:
    async def check() -> None:
        client = PipelinedRedis(private_redis.url, timeout=0.3)
        try:
            assert await client.execute("PING") == b"PONG"
            private_redis.pause()
            started = time.monotonic()
            outcomes = await asyncio.gather(*(client.execute("INCR", "n") for _ in range(50)),
                                            return_exceptions=True)
            waited = time.monotonic() - started
            assert all(isinstance(o, RedisTimeoutError) for o in outcomes), outcomes[:3]
            assert 0.25 <= waited < 5.0  # together: one after another would be 50 × 0.3 s = 15 s
            # While it stays paused, opening a new connection times out as well.
            with pytest.raises(RedisTimeoutError):
                await client.execute("PING")
            private_redis.resume()
            # Commands already written may still run once Redis wakes; what matters is that new ones work.
            assert await client.execute("PING") == b"PONG"
        finally:
            private_redis.resume()
            await client.close()

    run(check)


def test_a_redis_that_dies_fails_fast_and_is_reconnected_when_it_is_back(
    run: Callable[[Check], None], private_redis: PrivateRedis
) -> None:
    async def check() -> None:
        client = PipelinedRedis(private_redis.url, timeout=10)
        try:
            await client.execute("SET", "k", "v")
            private_redis.kill()
            started = time.monotonic()
            with pytest.raises(RedisConnectionError):
                await client.execute("GET", "k")
            with pytest.raises(RedisConnectionError, match="could not connect"):
                await client.execute("GET", "k")
            assert time.monotonic() - started < 5.0  # fast: not the 10 s timeout (a loaded CI took 1.4 s for 0.3 s)
            private_redis.start()  # same port, empty
            assert await client.execute("GET", "k") is None
            assert await client.execute("ECHO", "back") == b"back"
        finally:
            await client.close()

    run(check)


def test_calls_arriving_while_connecting_share_one_connection(run: Callable[[Check], None]) -> None:
    async def check() -> None:
        client = PipelinedRedis(settings.REDIS_URL, timeout=5)
        try:
            names: list[Any] = await asyncio.gather(*(client.execute("CLIENT", "ID") for _ in range(100)))
            assert len(set(names)) == 1
        finally:
            await client.close()

    run(check)
