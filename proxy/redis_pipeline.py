"""One pipelined Redis connection for the proxy's hot path.

Every call makes one or two Redis round trips (reserve, settle), so the client's own cost is paid on
every call. redis-py's asyncio client takes a pooled connection per command, wraps its reads in
timeouts and encodes arguments in Python: about a third of the proxy's CPU in the profile. Here all
of a worker's calls share one connection: commands written in the same loop iteration leave in one
write, replies come back in order and are parsed by hiredis, and each caller waits on a plain future.

Errors are redis-py's exception types, so callers handle both clients alike: `ConnectionError` when
Redis cannot be reached, `TimeoutError` when it stops answering (the connection is then dropped and
every command waiting on it fails), `ResponseError` for an error reply.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol, cast

import hiredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | bytes | int | float


@dataclass(frozen=True, slots=True)
class LuaScript:
    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> LuaScript:
        return cls(source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())


class ProxyRedis(Protocol):
    """What the proxy asks of its Redis client: PipelinedRedis, or ClusterRedis (proxy/redis_cluster.py)."""

    url: str
    commands: int  # sent on this client so far (the benchmark's Redis commands per call)

    async def execute(self, *args: Arg) -> Any: ...

    async def evalsha(self, script: LuaScript, keys: list[str], args: list[Arg]) -> Any: ...

    async def close(self) -> None: ...


class _Connection(asyncio.Protocol):
    """Replies are matched to commands by order: Redis answers a connection's commands in the order sent."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()
        self.reader = hiredis.Reader(replyError=ResponseError, notEnoughData=False)
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.transport: asyncio.Transport | None = None
        self.outgoing: list[bytes] = []
        self.flush_scheduled = False
        self.watchdog: asyncio.TimerHandle | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, with write(); uvloop's are not asyncio's classes, so isinstance cannot say so.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        if self.lost:
            raise RedisConnectionError("the Redis connection is closed")
        future = self.loop.create_future()
        self.waiting.append((future, time.monotonic()))
        self.outgoing.append(packed)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)
        if self.watchdog is None:
            self.watchdog = self.loop.call_later(self.timeout, self._check_overdue)
        return future

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.transport is None or self.lost:
            return
        data = self.outgoing[0] if len(self.outgoing) == 1 else b"".join(self.outgoing)
        self.outgoing.clear()
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                future, _ = self.waiting.popleft()
                if future.done():
                    continue  # its caller gave up (cancelled); the reply still had to be consumed
                if isinstance(reply, ResponseError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            self.abort(RedisConnectionError(f"unreadable reply from Redis: {exc}"))

    def _check_overdue(self) -> None:
        self.watchdog = None
        if not self.waiting or self.lost:
            return
        # The oldest command is the one Redis must answer first: if it is overdue, the connection is stuck.
        overdue_at = self.waiting[0][1] + self.timeout
        now = time.monotonic()
        if now >= overdue_at:
            self.abort(RedisTimeoutError(f"Redis did not answer within {self.timeout} s"))
        else:
            self.watchdog = self.loop.call_later(overdue_at - now, self._check_overdue)

    def abort(self, exc: Exception) -> None:
        self._fail_all(exc)
        if self.transport is not None:
            self.transport.abort()

    def _fail_all(self, exc: Exception) -> None:
        self.lost = True
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(RedisConnectionError(f"lost the Redis connection ({exc or 'closed by the server'})"))


class PipelinedRedis:
    """`execute("GET", key)`, `evalsha(script, keys, args)`: one connection, opened on first use and
    again after it is lost. Understands the same URLs as redis-py (redis://, rediss://, unix://)."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._options: dict[str, Any] = {**parse_url(url)}  # read for keys its TypedDict does not name
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self.commands = 0  # sent on this client: the benchmark reports them per call

    async def execute(self, *args: Arg) -> Any:
        self.commands += 1
        connection = self._connection
        if connection is None or connection.lost:
            connection = await self._connect()
        # hiredis's stub declares a one-element tuple; a command is any number of arguments.
        return await connection.send(hiredis.pack_command(args))  # type: ignore[arg-type]

    async def evalsha(self, script: LuaScript, keys: list[str], args: list[Arg]) -> Any:
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # A restarted or flushed Redis lost the script cache: EVAL runs the script and caches it again.
        return await self.execute("EVAL", script.source, len(keys), *keys, *args)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.transport is not None:
            connection.transport.close()

    async def _connect(self) -> _Connection:
        # Calls arriving while a connection is being opened wait for that one instead of opening their own.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(self._opened)
        return await asyncio.shield(self._connecting)

    def _opened(self, attempt: asyncio.Future[_Connection]) -> None:
        self._connecting = None
        if not attempt.cancelled():
            attempt.exception()  # seen by whoever awaited it; retrieved here in case nobody did

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        options = self._options
        try:
            async with asyncio.timeout(self.timeout):
                if options.get("connection_class") is UnixDomainSocketConnection:
                    _, connection = await loop.create_unix_connection(
                        lambda: _Connection(self.timeout), options["path"]
                    )
                else:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self.timeout), options.get("host", "localhost"),
                        int(options.get("port", 6379)), ssl=self._ssl_context(),
                    )
                await self._handshake(connection)
        except TimeoutError:
            raise RedisTimeoutError(f"could not connect to Redis within {self.timeout} s") from None
        except OSError as exc:
            raise RedisConnectionError(f"could not connect to Redis: {exc}") from None
        self._connection = connection
        return connection

    async def _handshake(self, connection: _Connection) -> None:
        replies = []
        password = self._options.get("password")
        if password:
            username = self._options.get("username")
            auth = ("AUTH", username, password) if username else ("AUTH", password)
            replies.append(connection.send(hiredis.pack_command(auth)))  # type: ignore[arg-type]
        db = int(self._options.get("db", 0) or 0)
        if db:
            replies.append(connection.send(hiredis.pack_command(("SELECT", db))))  # type: ignore[arg-type]
        try:
            await asyncio.gather(*replies)
        except ResponseError as exc:
            connection.abort(RedisConnectionError(f"Redis refused the connection: {exc}"))
            raise RedisConnectionError(f"Redis refused the connection: {exc}") from None
        except BaseException as exc:
            connection.abort(RedisConnectionError(f"could not connect to Redis: {exc!r}"))
            raise

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self._options.get("connection_class") is not SSLConnection:
            return None
        context = ssl.create_default_context(cafile=self._options.get("ssl_ca_certs"))
        requirement = str(self._options.get("ssl_cert_reqs", "required")).lower()
        if requirement == "none":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif requirement == "optional":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_OPTIONAL
        if self._options.get("ssl_certfile"):
            context.load_cert_chain(self._options["ssl_certfile"], self._options.get("ssl_keyfile"))
        return context
