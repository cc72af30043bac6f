"""What must hold after every hostile case, whatever the proxy's implementation (CONTRACT §1, §4, §5):

- no 5xx of the proxy's own (a provider's 5xx relayed is the provider's), nothing raised;
- every answer carries X-Tokonomics-Request-Id, and every answer to a known key has its usage record;
- a path holding an encoded separator or dot segment gets 400 invalid_path and never reaches the
  provider; a plain path is never refused as one;
- an error the proxy makes has the calling provider's shape;
- what the provider performed is what was metered: same operation, same status, admitted, priced;
- the ledger ingests (a hostile event never stalls it) and a bystander's event still lands after;
- no client value becomes a /metrics label, and the series count stays bounded;
- no counter of the bystander account, nor of acme's bystander tenant or feature, moves.
"""

from __future__ import annotations

import re
import time
from functools import cache
from typing import Any, Protocol
from urllib.parse import unquote

import orjson
from prometheus_client.parser import text_string_to_metric_families

from billing.models import UsageRecord
from billing.usage import ledger
from proxy import metrics
from proxy.budgets import BUDGET_KEY_FORMAT
from proxy.quota import events_stream_key
from tokonomics.redis_client import sync_redis

from ..support import KEY, OTHER_KEY
from .drive import Reply
from .strategies import PROVIDERS, Case
from .world import VICTIM_FEATURE, VICTIM_TENANT, Performed, World, account_keys

# Label values a correct proxy may emit whatever the client sent (CONTRACT §1: configured providers,
# known models, else `unknown`).
ALLOWED_LABELS = {
    "provider": {"", "unknown", "other", *PROVIDERS, "deepseek", "gemini", "mistral", "groq", "together",
                 "perplexity", "fireworks", "openrouter"},
    "model": {"", "unknown", "other", "gpt-4o-mini", "claude-sonnet-4-5", "text-embedding-3-small"},
    "feature": {"", "unknown", "other"},
    "environment": {"", "unknown", "other", "production", "staging", "development", "test"},
}
CONTROL = re.compile("[\x00-\x1f\x7f]")
LABEL_CAPS = {"feature": metrics.FEATURE_LIMIT, "environment": metrics.ENVIRONMENT_LIMIT}
LABELLED_HEADERS = {"feature": b"x-feature-name", "environment": b"x-environment"}
# /metrics may grow by the series of a few statuses and operations, never by one per client value.
MAX_NEW_METRIC_LINES = 400
SEPARATORS = re.compile(r"%(2f|5c|3f|23)", re.IGNORECASE)
PLAIN_PATH = re.compile(r"[A-Za-z0-9_\-/:~]*")


def path_verdict(rest: str) -> str:
    """'invalid' when CONTRACT §1 says 400 invalid_path (an encoded separator or a dot segment, in any case,
    encoded once or twice); 'plain' when no proxy may refuse it as a path; else 'either'."""
    decodings = [rest]
    while len(decodings) < 3 and unquote(decodings[-1]) != decodings[-1]:
        decodings.append(unquote(decodings[-1]))
    for index, form in enumerate(decodings):
        if index < len(decodings) - 1 and SEPARATORS.search(form):
            return "invalid"
        if any(part in (".", "..") for part in form.partition("?")[0].split("/")):
            return "invalid"
    return "plain" if PLAIN_PATH.fullmatch(rest) else "either"


def error_problem(reply: Reply, provider: str) -> str | None:
    """Why an error the proxy made is not in the calling provider's shape, or None."""
    try:
        body = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return f"error body is not JSON: {reply.body[:200]!r}"
    openai_shape = isinstance(body, dict) and isinstance(body.get("error"), dict) and isinstance(
        body["error"].get("message"), str) and isinstance(body["error"].get("type"), str)
    anthropic_shape = openai_shape and body.get("type") == "error"
    gemini_shape = isinstance(body, dict) and isinstance(body.get("error"), dict) and isinstance(
        body["error"].get("code"), int) and isinstance(body["error"].get("message"), str) and isinstance(
        body["error"].get("status"), str)
    if provider == "gemini-native":
        return None if gemini_shape else f"not Google's error shape: {reply.body[:200]!r}"
    if provider == "anthropic" and not anthropic_shape:
        return f"not Anthropic's error shape: {reply.body[:200]!r}"
    if provider in ("openai", "vllm-internal") and (not openai_shape or anthropic_shape):
        return f"not OpenAI's error shape: {reply.body[:200]!r}"
    if not openai_shape:
        return f"not a provider's error shape: {reply.body[:200]!r}"
    return None


def error_of(reply: Reply) -> dict[str, Any]:
    try:
        body = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return {}
    details = error.get("details")
    if isinstance(error.get("code"), int) and isinstance(details, list) and details and isinstance(details[0], dict):
        # Google's shape: the contract's type and code ride in an ErrorInfo's metadata.
        metadata = details[0].get("metadata")
        return {**error, **metadata} if isinstance(metadata, dict) else error
    return error


@cache
def catalogue_models() -> frozenset[str]:
    """The ids of the models the bundled price catalogue knows: a label may name any of them."""
    from genai_prices.data_snapshot import get_snapshot

    return frozenset(model.id for provider in get_snapshot().providers for model in provider.models)


def _model_of(body: bytes) -> str | None:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    model = payload.get("model") if isinstance(payload, dict) else None
    return model if isinstance(model, str) else None


def label_values(text: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {name: set() for name in ALLOWED_LABELS}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("tokonomics_"):
            continue
        for sample in family.samples:
            for name in ALLOWED_LABELS:
                if name in sample.labels:
                    found[name].add(sample.labels[name])
    return found


def readings(raw: bytes) -> set[str]:
    """The strings a server or proxy may make of a header's bytes."""
    forms = {raw.decode("latin-1"), raw.decode("utf-8", "replace")}
    return forms | {form.strip() for form in forms}


def _capped_label_problems(name: str, values: set[str]) -> list[str]:
    """Feature and environment labels are the client's own values (CONTRACT §5 labels metrics by them), so
    they are held to a shape and a count instead: no control characters, cut short, and at most the per-process cap of
    distinct values plus the shared overflow value."""
    problems = []
    bad = sorted(v[:80] for v in values if CONTROL.search(v) or len(v) > metrics.LABEL_MAX_CHARS)
    if bad:
        problems.append(f"{name} labels of /metrics that are not cleaned and cut: {bad[:5]}")
    if len(values - ALLOWED_LABELS[name]) > LABEL_CAPS[name] + 1:
        problems.append(f"{len(values)} distinct {name} labels on /metrics, over the cap of {LABEL_CAPS[name]}")
    return problems


class Target(Protocol):
    """A proxy to send cases to: in this process, or a server of its own."""

    settles_late: bool  # the usage event may leave after the response (a real server)

    def send(self, case: Case, *, key: str = KEY) -> Reply: ...

    def metrics_text(self) -> str: ...

    def redis_trouble(self) -> str:
        """What the proxy deferred or skipped for want of Redis ('' if nothing or it cannot tell)."""
        ...


def bystander_case(tenant: str, feature: str = "") -> Case:
    headers = [(b"x-tenant-id", tenant.encode())]
    if feature:
        headers.append((b"x-feature-name", feature.encode()))
    body = orjson.dumps({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    return Case("POST", "openai", "/chat/completions", headers=headers, body=body)


class Judge:
    """Runs cases against a target and checks every invariant after each; `finish` checks the batch."""

    def __init__(self, world: World, target: Target) -> None:
        self.world = world
        self.target = target
        self.cases = 0
        # The bystanders have spent before the attack: their counters exist and must not move.
        for key, tenant, feature in ((KEY, VICTIM_TENANT, VICTIM_FEATURE), (OTHER_KEY, VICTIM_TENANT, "")):
            reply = target.send(bystander_case(tenant, feature), key=key)
            assert reply.status == 200, (reply.status, reply.body[:500])
            self.record_of(reply.request_id)
        world.sim.take()
        self.bystander_keys = self._bystander_keys()
        self.bystanders = self._bystanders()
        assert all(self.bystanders.values()), f"bystander counters missing: {self.bystanders}"
        metrics = target.metrics_text()
        self.lines_before = len(metrics.splitlines())
        self.labels_before = label_values(metrics)
        self.sent: dict[str, set[str]] = {name: set() for name in ALLOWED_LABELS}

    def _bystander_keys(self) -> dict[str, list[str]]:
        # acme's per-tenant and per-feature counters now are the bystanders' alone, whatever their key format.
        budget = f":b{BUDGET_KEY_FORMAT}:"
        budgets = (f"{budget}{self.world.tenant_budget.pk}:", f"{budget}{self.world.feature_budget.pk}:")
        acme = [key for key in account_keys(self.world.acme.pk) if any(b in key for b in budgets)]
        globex = [key for key in account_keys(self.world.globex.pk) if budget in key or ":plan:" in key]
        return {"acme's bystander tenant and feature": acme, "globex": globex}

    def _bystanders(self) -> dict[str, dict[str, Any]]:
        client = sync_redis()
        return {who: {key: client.hgetall(key) if client.type(key) == b"hash" else client.get(key) for key in keys}
                for who, keys in self.bystander_keys.items()}

    # --- one case ---------------------------------------------------------------------------------

    def run(self, case: Case) -> None:
        self.check(case, self.target.send(case))

    def check(self, case: Case, reply: Reply) -> None:
        self.cases += 1
        performed = self._performed(reply)
        problems: list[str] = []
        for check in (self._answer, self._redis, self._path, self._metering, self._counters, self._labels):
            problems += check(case, reply, performed)
        if problems:
            raise AssertionError("\n".join([*problems, f"answer: {reply.status} {reply.body[:300]!r}",
                                            f"case: {case.short()}"]))

    def _performed(self, reply: Reply) -> list[Performed]:
        if self.target.settles_late:
            time.sleep(0.01)  # the simulator records as it answers; the answer may be read first
        return self.world.sim.take()

    def _answer(self, case: Case, reply: Reply, performed: list[Performed]) -> list[str]:
        problems = []
        if reply.raised:
            problems.append(f"the proxy raised: {reply.raised}")
        relayed = len(performed) == 1 and performed[0].status == reply.status
        if reply.status >= 500 and not relayed:
            problems.append(f"a {reply.status} of the proxy's own")
        if not reply.server_refused and not reply.request_id and not reply.raised:
            problems.append("no X-Tokonomics-Request-Id")
        if len(performed) > 1:
            problems.append(f"the provider received {len(performed)} requests for one call")
        # An upstream that refused the request before its handlers (a header too large) answered it itself.
        upstream_answered = b"aiohttp" in reply.headers.get(b"server", b"")
        if not performed and not upstream_answered and reply.status >= 400 and not reply.server_refused \
                and not reply.raised:
            problem = error_problem(reply, case.provider)
            if problem:
                problems.append(problem)
        return problems

    def _redis(self, case: Case, reply: Reply, performed: list[Performed]) -> list[str]:
        trouble = self.target.redis_trouble()
        return [f"Redis is up, yet {trouble}"] if trouble else []

    def _path(self, case: Case, reply: Reply, performed: list[Performed]) -> list[str]:
        problems = []
        for request in performed:
            if request.leaked_headers:
                problems.append(f"the provider received the caller's own headers: {request.leaked_headers}")
            if path_verdict(request.raw_path.partition("?")[0]) == "invalid":
                problems.append(f"the provider received an invalid path: {request.raw_path!r}")
        if reply.server_refused:
            return problems  # the server refused the request (a NUL in a header) before the proxy saw its path
        verdict = path_verdict(f"/{case.provider}{case.rest}")  # the whole proxy path, provider slug and all
        if case.provider == "gemini-native" and unquote(case.rest).rstrip("/").rpartition("/")[2].count(":") > 1:
            verdict = "invalid"  # CONTRACT §1: which method Google reads from two ':' is a guess, refused
        code = error_of(reply).get("code")
        if verdict == "invalid" and (reply.status, code) != (400, "invalid_path"):
            problems.append(f"{case.raw_path!r} holds an encoded separator or dot segment: 400 invalid_path expected, "
                            f"got {reply.status} {code!r}")
        if verdict == "invalid" and error_of(reply).get("type") != "invalid_request_error":
            problems.append("invalid_path must be an invalid_request_error")
        if verdict == "plain" and code == "invalid_path" and case.provider in PROVIDERS:
            problems.append(f"{case.rest!r} is a plain path, refused as invalid_path")
        return problems

    def _metering(self, case: Case, reply: Reply, performed: list[Performed]) -> list[str]:
        if reply.raised or reply.server_refused or reply.status == 401 or not reply.request_id:
            return []
        if error_of(reply).get("code") == "invalid_path" and not performed:
            return []  # may be refused before the key is read: then no account to record it under
        try:
            record = self.record_of(reply.request_id)
        except AssertionError as exc:
            return [str(exc)]
        problems = []
        if record.account_id != self.world.acme.pk:
            problems.append(f"acme's call recorded under account {record.account_id}")
        if not record.enforced:
            problems.append("recorded as unenforced while Redis answers")
        if not performed:
            return problems
        request = performed[0]
        if record.status_code != request.status:
            problems.append(f"the provider answered {request.status}, the record says {record.status_code}")
        if request.operation and request.status < 400:
            seen = (record.operation, record.denied_scope)
            if seen != (request.operation, ""):
                problems.append(f"the provider performed {request.operation} at {request.raw_path!r}; "
                                f"metered as (operation, denied_scope) {seen}")
            # Gemini's streamGenerateContent without alt=sse streams a JSON array: the record says it streamed.
            streamed = reply.headers.get(b"content-type", b"").startswith(b"text/event-stream") or record.streamed
            if not streamed and b"x-tokonomics-cost-usd" not in reply.headers:
                problems.append("a metered non-streaming answer without X-Tokonomics-Cost-USD")
            if record.cost_usd is None:
                problems.append(f"an unpriced call ({record.model!r}) passed acme's hard budgets "
                                "(403 model_unpriced expected)")
        return problems

    def record_of(self, request_id: str) -> UsageRecord:
        """The call's usage record, after running the ledger; AssertionError when it stalls or lacks it."""
        # CONTRACT §4: records reach the database within 2 seconds; in process the call has settled already.
        deadline = time.monotonic() + (3 if self.target.settles_late else 1.5)
        while True:
            self.ingest()
            record = UsageRecord.objects.filter(request_id=request_id).first()
            if record is not None:
                return record
            if time.monotonic() > deadline:
                raise AssertionError(f"no usage record for {request_id}")
            time.sleep(0.05)

    def ingest(self) -> None:
        try:
            ledger.usage_ingest(max_seconds=2)
        except Exception as exc:
            # Clear the poison so the next case is judged on its own, then say what stalled.
            client = sync_redis()
            client.delete(*(events_stream_key(a.pk) for a in (self.world.acme, self.world.globex)))
            ledger._groups_made.clear()
            raise AssertionError(f"the ledger stalled: usage_ingest raised {type(exc).__name__}: "
                                 f"{str(exc)[:300]}") from None

    def _counters(self, case: Case, reply: Reply, performed: list[Performed]) -> list[str]:
        now = self._bystanders()
        problems = []
        for who, values in self.bystanders.items():
            if now[who] != values:
                moved = {key: (was, now[who].get(key)) for key, was in values.items() if was != now[who].get(key)}
                problems.append(f"{who}'s counters moved: {moved}")
        self.bystanders = now  # report each move once
        return problems

    def _labels(self, case: Case, reply: Reply, performed: list[Performed]) -> list[str]:
        for name, values in case.hostile.items():
            if name in self.sent:
                for value in values:
                    self.sent[name] |= readings(value)
        for name, header in LABELLED_HEADERS.items():
            for value in (v for n, v in case.headers if n.lower() == header):
                self.sent[name] |= readings(value)
        self.sent["provider"] |= {case.provider, unquote(case.provider)}
        model = _model_of(case.body)
        if model is not None:
            self.sent["model"].add(model)
        now = label_values(self.target.metrics_text())
        problems = []
        for name, values in now.items():
            if name in LABEL_CAPS:
                problems += _capped_label_problems(name, values)
                continue
            known = catalogue_models() if name == "model" else frozenset()
            leaked = {value for value in values - self.labels_before[name] - ALLOWED_LABELS[name] - known
                      if self._sent_by_client(name, value)}
            if leaked:
                problems.append(f"client values became {name} labels of /metrics: "
                                f"{sorted(v[:80] + ('…' if len(v) > 80 else '') for v in leaked)[:5]}")
        self.labels_before = now
        return problems

    def _sent_by_client(self, name: str, value: str) -> bool:
        # A label cut short is still the client's value.
        return any(value == sent or (len(value) >= 16 and sent.startswith(value)) for sent in self.sent[name])

    # --- the batch --------------------------------------------------------------------------------

    def finish(self) -> None:
        """After the batch: the bystander's next call is ingested, /metrics stayed bounded."""
        lines = len(self.target.metrics_text().splitlines())
        assert lines - self.lines_before <= MAX_NEW_METRIC_LINES, (
            f"/metrics grew by {lines - self.lines_before} lines over {self.cases} hostile cases")
        reply = self.target.send(bystander_case("after-the-batch"), key=OTHER_KEY)
        assert reply.status == 200, (reply.status, reply.body[:300])
        record = self.record_of(reply.request_id)
        assert record.account_id == self.world.globex.pk
