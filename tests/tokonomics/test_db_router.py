"""DATABASE_REPLICA_URL: dashboards and the API's aggregates read the ledger from the replica, everything
else (sign-in, accounts, writes, transactions, migrations) stays on the primary. The replica here is a
second connection alias to the test database, as Django's TEST MIRROR makes it (the settings set that)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.models import Account, UsageRecord, UsageRollup
from billing.usage.records import usage_record_batch
from tokonomics.db_router import REPLICA, ReplicaRouter, replica_reads

from ..support import ApiClient, token_for, usage_event

LEDGER_TABLES = ("billing_usagerecord", "billing_usagerollup", "billing_usagedayrollup", "billing_usagesummary",
                 "billing_usagetenant", "billing_usagetag")


@pytest.fixture(scope="module", autouse=True)
def replica_alias(django_db_setup, django_db_blocker) -> Iterator[None]:
    """A 'replica' alias on the test database for this module's tests (what DATABASE_REPLICA_URL and its TEST
    MIRROR make), gone after them so that no other test reads through the router."""
    primary = connections.settings[DEFAULT_DB_ALIAS]
    connections.settings[REPLICA] = {**primary, "TEST": {**primary.get("TEST", {}), "MIRROR": DEFAULT_DB_ALIAS}}
    try:
        yield
    finally:
        with django_db_blocker.unblock():
            connections[REPLICA].close()
        del connections[REPLICA]
        del connections.settings[REPLICA]


@pytest.fixture
def replica() -> BaseDatabaseWrapper:
    """Committed rows are visible through it: the tests that use it run outside a test transaction."""
    return connections[REPLICA]


pytestmark = pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, REPLICA])


def _recent(account: Account, n: int) -> dict:
    return usage_event(account.pk, n, prefix="req_replica", feature="search", cost_usd="0.01",
                       created_at=(datetime.now(UTC) - timedelta(minutes=5)).timestamp())


def _ledger_queries(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if any(table in q["sql"] for table in LEDGER_TABLES)]


def _other_queries(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if not any(table in q["sql"] for table in LEDGER_TABLES)]


def _captured(action) -> tuple[CaptureQueriesContext, CaptureQueriesContext, object]:
    with CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as primary, \
            CaptureQueriesContext(connections[REPLICA]) as replica:
        result = action()
    return primary, replica, result


def test_the_dashboard_reads_the_ledger_from_the_replica_and_sign_in_from_the_primary(
    replica, client, alice, acme
) -> None:
    usage_record_batch(events=[_recent(acme, n) for n in range(3)])
    client.force_login(alice)
    primary, on_replica, page = _captured(lambda: client.get(reverse("dashboard", args=["acme"])))
    assert page.status_code == 200 and "$0.030000" in page.content.decode()
    assert _ledger_queries(on_replica), "the dashboard read no rollup from the replica"
    assert not _other_queries(on_replica), _other_queries(on_replica)  # sessions, seats, accounts: primary
    assert not _ledger_queries(primary), _ledger_queries(primary)
    assert any("django_session" in sql for sql in _other_queries(primary))


def test_the_calls_log_and_the_apis_aggregates_read_from_the_replica(replica, client, alice, acme) -> None:
    usage_record_batch(events=[_recent(acme, n) for n in range(2)])
    client.force_login(alice)
    _, on_replica, page = _captured(lambda: client.get(reverse("call_list", args=["acme"])))
    assert page.status_code == 200 and any("billing_usagerecord" in sql for sql in _ledger_queries(on_replica))

    api = ApiClient(token_for(acme))
    primary, on_replica, answer = _captured(lambda: api.get("usage/aggregates", group_by="feature"))
    assert answer.status_code == 200, answer.content
    assert answer.json()["total"]["requests"] == 2
    assert _ledger_queries(on_replica) and not _ledger_queries(primary)
    assert any("billing_managementtoken" in sql for sql in _other_queries(primary))  # the caller's token


def test_writes_and_reads_inside_a_transaction_stay_on_the_primary(replica, acme) -> None:
    with replica_reads():
        primary, on_replica, stored = _captured(lambda: usage_record_batch(events=[_recent(acme, 1)]))
        assert stored == 1 and not on_replica.captured_queries and _ledger_queries(primary)

        def read_in_transaction() -> int:
            with transaction.atomic():
                return UsageRecord.objects.filter(account=acme).count()

        primary, on_replica, count = _captured(read_in_transaction)
        assert count == 1 and not on_replica.captured_queries
        _, on_replica, count = _captured(lambda: UsageRecord.objects.filter(account=acme).count())
        assert count == 1 and on_replica.captured_queries


def test_without_a_replica_or_outside_reporting_reads_the_router_says_nothing(monkeypatch) -> None:
    router = ReplicaRouter()
    assert router.db_for_read(UsageRollup) is None  # not a reporting read
    monkeypatch.delitem(connections.settings, REPLICA)
    with replica_reads():
        assert router.db_for_read(UsageRollup) is None  # no replica configured
    assert router.db_for_write(UsageRollup) == DEFAULT_DB_ALIAS
    assert router.allow_migrate(REPLICA, "billing") is False
    assert router.allow_migrate(DEFAULT_DB_ALIAS, "billing") is True


def test_the_router_sends_only_the_ledger_to_the_replica(replica) -> None:
    router = ReplicaRouter()
    with replica_reads():
        assert router.db_for_read(UsageRollup) == REPLICA
        assert router.db_for_read(Account) is None
    assert router.db_for_read(UsageRollup) is None
