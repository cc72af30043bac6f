"""The world every hostile case runs in: two accounts behind the real proxy, the simulator as their
provider, real Redis and PostgreSQL; and a look at that world (what the simulator performed, the
counters of bystanders) that the invariants compare before and after each case."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiohttp import web

from billing.models import Account, Budget, PriceOverride
from proxy.models import ProviderEndpoint
from proxy.simulator import SimulatorThread
from tokonomics.redis_client import sync_redis

from ..support import KEY, OTHER_KEY, make_account, make_key

# The simulator's routes, and the operation the proxy must meter a call to each as (None: not metered).
SIMULATED_OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/responses": "responses",
    "/v1/embeddings": "embeddings",
    "/v1/messages": "messages",
}
# Gemini's routes: the method is what follows the last ':' of the path, as the simulator reads it.
GEMINI_ROUTES = frozenset({"/v1beta/models/{call}", "/v1/models/{call}"})
GEMINI_OPERATIONS = {"generateContent": "generate_content", "streamGenerateContent": "generate_content",
                     "embedContent": "embeddings", "batchEmbedContents": "embeddings"}
CALLER_HEADERS = frozenset({"x-feature-name", "x-tenant-id", "x-environment", "x-tokonomics-tags"})
VICTIM_TENANT = "bystander-tenant-q7"
VICTIM_FEATURE = "bystander-feature-q7"
PRICED = (("openai", "gpt-4o-mini"), ("openai", "text-embedding-3-small"), ("anthropic", "claude-sonnet-4-5"))


@dataclass(frozen=True)
class Performed:
    """One request the simulator received: as its router saw it, and how it answered."""

    method: str
    raw_path: str
    path: str
    route: str  # the simulator route it matched ("/{path}": none of the provider's)
    status: int
    leaked_headers: tuple[str, ...]  # the caller's key and attribution headers, which the proxy must remove

    @property
    def operation(self) -> str | None:
        if self.method == "POST" and self.route in GEMINI_ROUTES:
            return GEMINI_OPERATIONS.get(self.path.rpartition(":")[2])
        return SIMULATED_OPERATIONS.get(self.route)


class RecordingSimulator:
    """The simulator, with every request it receives recorded as its router saw it (raw path, match)."""

    def __init__(self) -> None:
        self.thread = SimulatorThread(port=0)
        self.lock = threading.Lock()
        self.performed: list[Performed] = []

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            response = await handler(request)
            if not request.path.startswith("/_sim/"):
                route = request.match_info.route.resource
                leaked = tuple(sorted(name.lower() for name, value in request.headers.items()
                                      if name.lower() in CALLER_HEADERS or "mk_" in value))
                with self.lock:
                    self.performed.append(Performed(request.method, request.raw_path, request.path,
                                                    route.canonical if route is not None else "", response.status,
                                                    leaked))
            return response

        self.thread.app.middlewares.append(record)

    def __enter__(self) -> RecordingSimulator:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.stop()

    @property
    def url(self) -> str:
        return self.thread.base_url

    def take(self) -> list[Performed]:
        with self.lock:
            taken, self.performed = self.performed, []
        return taken


@dataclass
class World:
    sim: RecordingSimulator
    acme: Account
    globex: Account
    tenant_budget: Budget
    feature_budget: Budget


def world_build(sim: RecordingSimulator, plans: dict) -> World:
    """acme: the account under attack (hard account and per-tenant budgets, unmetered routes allowed so
    that every route reaches the provider); globex: a bystander with a per-tenant budget of its own."""
    acme = make_account("acme", sim.url, plans["pro"])
    gemini_endpoint_add(acme, sim.url)
    acme.allow_unmetered_routes = True
    acme.save(update_fields=["allow_unmetered_routes"])
    make_key(acme, KEY)
    globex = make_account("globex", sim.url, plans["pro"])
    gemini_endpoint_add(globex, sim.url)
    make_key(globex, OTHER_KEY)
    for account in (acme, globex):
        for provider, model in PRICED:
            PriceOverride.objects.create(account=account, provider=provider, model=model,
                                         input_per_mtok=Decimal("0.1"), output_per_mtok=Decimal("0.4"))
        Budget.objects.create(account=account, scope="account", period="month", limit_usd=Decimal(500), hard=True)
    tenant_budget = Budget.objects.create(account=acme, scope="tenant", match="*", period="month",
                                          limit_usd=Decimal(5), hard=True)
    feature_budget = Budget.objects.create(account=acme, scope="feature", match="*", period="day",
                                           limit_usd=Decimal(20), hard=False)
    Budget.objects.create(account=globex, scope="tenant", match="*", period="month", limit_usd=Decimal(5), hard=True)
    return World(sim, acme, globex, tenant_budget, feature_budget)


def gemini_endpoint_add(account: Account, sim: str) -> None:
    endpoint = ProviderEndpoint(account=account, slug="gemini-native", wire_format="gemini", base_url=sim,
                                pricing_provider="google")
    endpoint.set_credential(f"AIza-upstream-{account.slug}")
    endpoint.save()


def account_keys(account_id: int) -> dict[str, Any]:
    """Every Redis value an account keeps but its event stream (which the ledger drains) and the live
    dashboards' token, as comparable Python values."""
    client = sync_redis()
    found: dict[str, Any] = {}
    for raw in client.scan_iter(match=f"tk:{{a:{account_id}}}:*", count=1000):
        key = raw.decode("latin-1")
        if key.endswith((":events", ":ingested")):
            continue
        kind = client.type(raw).decode()
        if kind == "hash":
            found[key] = client.hgetall(raw)
        elif kind == "string":
            found[key] = client.get(raw)
        elif kind == "zset":
            found[key] = client.zrange(raw, 0, -1, withscores=True)
        elif kind == "set":
            found[key] = client.smembers(raw)
    return found
