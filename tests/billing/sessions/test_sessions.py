"""Agent sessions (issue 19 §3): the sessions list and one run's summary, read from the records of one account."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.urls import reverse

from billing.models import Account
from billing.sessions.selectors import session_get, session_list
from billing.usage.records import usage_record_batch

from ...support import ApiClient, token_for, usage_event

pytestmark = pytest.mark.django_db
NOW = datetime.now(UTC).replace(microsecond=0)


def _calls(account, *specs: dict) -> None:
    usage_record_batch(events=[usage_event(account.pk, n, prefix=f"req_sess_{account.slug}", **spec)
                               for n, spec in enumerate(specs)])


def _at(minutes_ago: float) -> float:
    return (NOW - timedelta(minutes=minutes_ago)).timestamp()


def test_sessions_list_spend_calls_duration_and_models(acme, plans) -> None:
    other = Account.objects.create(slug="other", name="Other", plan=plans["pro"], timezone="UTC")
    _calls(acme,
           {"session": "run-a", "session_name": "pytest -x", "model": "gpt-4o-mini", "provider": "openai",
            "cost_usd": "0.25", "created_at": _at(30), "session_git": "repo=app;branch=main;commit=aaa;dirty=0"},
           {"session": "run-a", "model": "claude-sonnet-4-5", "provider": "anthropic", "cost_usd": "0.5",
            "created_at": _at(20), "session_git": "repo=app;branch=main;commit=bbb;dirty=1"},
           {"session": "run-a", "model": "gpt-4o-mini", "provider": "openai", "cost_usd": "0", "status_code": 429,
            "denied_scope": "session_budget", "created_at": _at(19)},
           {"session": "run-b", "model": "gpt-4o-mini", "provider": "openai", "cost_usd": "1", "created_at": _at(5)},
           {"model": "gpt-4o-mini", "cost_usd": "9", "created_at": _at(4)})  # no session: not listed
    _calls(other, {"session": "run-a", "cost_usd": "7", "created_at": _at(1)})  # another account's run-a

    rows = session_list(account=acme)
    assert [r.session for r in rows] == ["run-b", "run-a"]
    run_a = rows[1]
    assert (run_a.calls, run_a.denied, run_a.cost_usd, run_a.name) == (3, 1, Decimal("0.75"), "pytest -x")
    assert run_a.duration == timedelta(minutes=11)
    assert run_a.models == ["claude-sonnet-4-5", "gpt-4o-mini"]

    summary = session_get(account=acme, session="run-a")
    assert summary is not None
    assert (summary.git_start, summary.git_end) == ("repo=app;branch=main;commit=aaa;dirty=0",
                                                    "repo=app;branch=main;commit=bbb;dirty=1")
    assert [(r.name, r.calls, r.cost_usd) for r in summary.by_provider] == [
        ("anthropic", 1, Decimal("0.5")), ("openai", 2, Decimal("0.25"))]
    assert session_get(account=acme, session="run-zzz") is None
    assert session_get(account=other, session="run-b") is None


def test_sessions_page_in_the_account_time_zone(client, alice, acme) -> None:
    acme.timezone = "Asia/Kolkata"
    acme.save()
    _calls(acme, {"session": "run-<b>", "session_name": "<script>x</script>", "cost_usd": "0.5",
                  "created_at": _at(60)})
    client.force_login(alice)
    response = client.get(reverse("session_list", args=["acme"]), {})
    body = response.content.decode()
    assert response.status_code == 200
    assert "run-&lt;b&gt;" in body and "<script>x" not in body
    assert (NOW - timedelta(minutes=60)).astimezone(ZoneInfo("Asia/Kolkata")).strftime("%Y-%m-%d %H:%M:%S") in body
    assert "?session=run-%3Cb%3E" in body


def test_the_call_log_filters_by_session(client, alice, acme) -> None:
    _calls(acme, {"session": "run-a", "created_at": _at(3)}, {"session": "run-b", "created_at": _at(2)})
    client.force_login(alice)
    body = client.get(reverse("call_list", args=["acme"]), {"session": "run-a"}).content.decode()
    assert body.count("req_sess_acme") == 1 and "session = run-a" in body


def _two_runs(acme) -> None:
    _calls(acme,
           {"session": "run-a", "model": "gpt-4o-mini", "provider": "openai", "cost_usd": "0.25", "created_at": _at(9),
            "session_git": "repo=app;branch=main;commit=aaa;dirty=0", "feature": "=cmd|x"},
           {"session": "run-a", "model": "claude-sonnet-4-5", "provider": "anthropic", "cost_usd": "0.5",
            "created_at": _at(8)},
           {"session": "run-b", "cost_usd": "1", "created_at": _at(7)})


def test_the_rest_api_lists_sessions_and_summarises_one(acme, globex) -> None:
    _two_runs(acme)
    api = ApiClient(token_for(acme))
    listed = api.get("sessions").json()
    assert [(s["session"], s["calls"], s["cost_usd"]) for s in listed] == [("run-b", 1, "1.000000000"),
                                                                        ("run-a", 2, "0.750000000")]
    one = api.get("sessions/run-a").json()
    assert one["git_start"] == "repo=app;branch=main;commit=aaa;dirty=0"
    assert [(r["name"], r["calls"]) for r in one["by_model"]] == [("claude-sonnet-4-5", 1), ("gpt-4o-mini", 1)]
    assert [r["name"] for r in one["by_provider"]] == ["anthropic", "openai"]
    assert ApiClient(token_for(globex)).get("sessions/run-a").status_code == 404  # another account's run


def test_exportusage_one_session_and_its_summary(acme) -> None:
    _two_runs(acme)
    out = io.StringIO()
    call_command("exportusage", "--account", "acme", "--session", "run-a", "--format", "csv", stdout=out,
                 stderr=io.StringIO())
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["session"] for r in rows] == ["run-a", "run-a"]
    assert rows[0]["feature"] == "'=cmd|x"  # client text never a formula
    out = io.StringIO()
    call_command("exportusage", "--account", "acme", "--session", "run-a", "--summary", stdout=out)
    summary = json.loads(out.getvalue())
    assert (summary["session"], summary["calls"], summary["cost_usd"]) == ("run-a", 2, "0.750000000")
    assert {r["name"]: r["cost_usd"] for r in summary["by_provider"]} == {"anthropic": "0.500000000",
                                                                         "openai": "0.250000000"}


def test_a_session_budget_through_the_rest_api_and_applyconfig_schema(acme) -> None:
    from tokonomics.config.schema import BudgetIn

    api = ApiClient(token_for(acme))
    created = api.post("budgets", {"scope": "session", "match": "*", "period": "total", "limit_usd": "2"})
    assert created.status_code == 201 and created.json()["scope"] == "session"
    assert BudgetIn(scope="session", match="*", period="total", limit_usd=Decimal(2)).scope == "session"
