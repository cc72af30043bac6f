"""No prompt or response content in the database, Redis, logs or task messages (CONTRACT §4)."""

from __future__ import annotations

import contextlib
import logging

import anthropic
import openai
from django.db import connection

from billing.models import UsageRecord
from billing.usage.ledger import usage_ingest
from tokonomics.redis_client import sync_redis

from ..support import KEY

CANARY = "CANARY-7f3a9c-never-store-me"


def redis_text() -> str:
    client = sync_redis()
    parts = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            parts.append(client.get(key))
        elif kind == "hash":
            parts.append(client.hgetall(key))
        elif kind == "stream":
            parts.append(client.xrange(key))
        elif kind == "zset":
            parts.append(client.zrange(key, 0, -1))
        elif kind == "list":
            parts.append(client.lrange(key, 0, -1))
        elif kind == "set":
            parts.append(client.smembers(key))
        parts.append(key)
    return repr(parts)


def database_text() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [row[0] for row in cursor.fetchall()]
        dump = []
        for table in tables:
            cursor.execute(f'SELECT row_to_json(t)::text FROM "{table}" t')  # noqa: S608 - our own table names
            dump.extend(row[0] for row in cursor.fetchall())
    return "\n".join(dump)


def test_canary_reaches_no_store(stack, caplog, capfd) -> None:
    caplog.set_level(logging.DEBUG)
    oai = openai.OpenAI(base_url=f"{stack.proxy}/proxy/openai", api_key=KEY, max_retries=0)
    claude = anthropic.Anthropic(base_url=f"{stack.proxy}/proxy/anthropic", api_key=KEY, max_retries=0)
    prompt = f"Please repeat {CANARY} back to me."
    seen: list[str] = []

    chat = oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
    seen.append(chat.choices[0].message.content or "")
    for chunk in oai.chat.completions.create(model="gpt-4o-mini", stream=True,
                                             messages=[{"role": "system", "content": CANARY},
                                                       {"role": "user", "content": prompt}]):
        if chunk.choices:
            seen.append(chunk.choices[0].delta.content or "")
    response = oai.responses.create(model="gpt-4o-mini", input=prompt, instructions=CANARY)
    seen.append(response.output_text)
    with oai.responses.stream(model="gpt-4o-mini", input=prompt) as events:
        for _ in events:
            pass
    oai.embeddings.create(model="text-embedding-3-small", input=[prompt, CANARY])
    message = claude.messages.create(model="claude-sonnet-4-5", max_tokens=64, system=CANARY,
                                     messages=[{"role": "user", "content": prompt}])
    seen.append(message.content[0].text)
    with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                                messages=[{"role": "user", "content": prompt}]) as stream:
        seen.append("".join(stream.text_stream))
    # A routed call that fails over (every attempt on its record) and a retried error keep no content either.
    from proxy.models import Route

    Route.objects.create(account=stack.account, name="support-default",
                         targets=[{"endpoint": "openai", "model": "gpt-4o"},
                                  {"endpoint": "vllm-internal", "model": "gpt-4o-mini"}], retries=0)
    routed = oai.chat.completions.create(model="support-default", messages=[{"role": "user", "content": prompt}],
                                         extra_headers={"X-Sim-Status": "503", "X-Sim-Fail-Model": "gpt-4o"})
    seen.append(routed.choices[0].message.content or "")
    # A denied call with the canary in its body is recorded too, without it.
    oai_bad_model = openai.OpenAI(base_url=f"{stack.proxy}/proxy/nowhere", api_key=KEY, max_retries=0)
    with contextlib.suppress(openai.PermissionDeniedError):
        oai_bad_model.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])

    # Response content: the longest generated phrases the clients saw.
    response_fragments = [text[:40] for text in seen if len(text) >= 20]
    assert response_fragments
    secrets = [CANARY, *response_fragments]

    before_ingest = redis_text()  # the usage events, while they are still in Redis
    usage_ingest(max_seconds=1)
    assert UsageRecord.objects.count() >= 9
    stores = {
        "redis (events queued)": before_ingest,
        "redis": redis_text(),
        "database": database_text(),
        # Our own loggers and the servers' (the SDK clients log their own requests at DEBUG; not ours).
        "logs": "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("openai", "anthropic",
                                                                                              "httpx", "httpcore"))),
        "stdout/stderr": "".join(capfd.readouterr()),
    }
    for where, text in stores.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} found in {where}"


def test_the_response_cache_keeps_no_content_in_plain(stack) -> None:
    """With the account's response cache on, answers are kept in Redis: sealed, and named by an HMAC, so
    neither the prompt nor the answer can be read there (nor in the database or the usage records)."""
    from ..support import proxy_config_seen, wait_until

    stack.account.cache_enabled = True
    stack.account.save()
    proxy_config_seen()
    oai = openai.OpenAI(base_url=f"{stack.proxy}/proxy/openai", api_key=KEY, max_retries=0)
    prompt = [{"role": "user", "content": f"Please repeat {CANARY} back to me."}]
    answer = oai.chat.completions.create(model="gpt-4o-mini", messages=prompt, temperature=0)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in oai.chat.completions.create(
        model="gpt-4o-mini", messages=prompt, temperature=0, stream=True) if chunk.choices)
    wait_until(lambda: len(sync_redis().keys("*:rc:e:*")) == 2, message="the answers were not kept")
    replayed = oai.chat.completions.create(model="gpt-4o-mini", messages=prompt, temperature=0)
    assert replayed.choices[0].message.content == answer.choices[0].message.content
    secrets = [CANARY, (answer.choices[0].message.content or "")[:40], text[:40]]
    assert all(len(secret) >= 20 for secret in secrets)
    raw = b"".join(sync_redis().get(key) or b"" for key in sync_redis().keys("*:rc:e:*"))
    usage_ingest(max_seconds=1)
    for where, found in {"redis": redis_text(), "redis (raw entries)": repr(raw), "database": database_text()}.items():
        for secret in secrets:
            assert secret not in found, f"{secret!r} found in {where}"
