"""deploy/: the Grafana dashboard reads only series /metrics really exposes, and Prometheus accepts the
alert rules and every dashboard expression (promtool, Debian's `prometheus` package, which CI installs)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from ..support import KEY, ProxyProcess, make_account, make_key

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "tokonomics.json"
RULES = REPO / "deploy" / "prometheus" / "tokonomics-rules.yml"
SERIES = re.compile(r"\btokonomics_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created")}
# Grafana's own variables, as a query over the last hour with every provider and environment selected sends them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$provider": ".*", "$environment": ".*"}

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool is missing (apt-get install prometheus; .ci/run installs it)")


def _panels() -> list[dict]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _exprs() -> list[str]:
    return [target["expr"] for panel in _panels() for target in panel["targets"]]


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "tokonomics-overview"
    assert dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    for panel in _panels():
        assert panel["title"] and panel["targets"], panel
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval", "__range"}
            assert used <= variables, (panel["title"], used - variables)


@pytest.fixture
def scraped(transactional_db, simulator, plans) -> Iterator[set[str]]:
    """The sample names a real proxy worker's /metrics exposes after a call (every family, with its TYPE)."""
    account = make_account("acme", simulator, plans["pro"])
    make_key(account, KEY)
    with ProxyProcess() as worker:
        response = httpx.post(f"{worker.url}/proxy/openai/chat/completions", timeout=10,
                              headers={"Authorization": f"Bearer {KEY}"},
                              json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 200
        text = httpx.get(f"{worker.url}/metrics", timeout=10).text
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split()
            names.update(family + suffix for suffix in SUFFIXES.get(kind, ("",)))
        elif line.startswith("tokonomics_"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    yield names


def _registered() -> set[str]:
    """The sample names of every family registered for /metrics, also those no call has touched yet (a
    labelled counter shows on /metrics only from its first increment: a denial, an outage, an error)."""
    from prometheus_client import REGISTRY

    from proxy import ledger_metrics, metrics  # noqa: F401  (registers the proxy's families)

    names = set()
    for registry in (REGISTRY, ledger_metrics._registry):
        for family in registry.collect():
            names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def test_every_dashboard_and_rule_series_is_on_metrics(scraped: set[str]) -> None:
    # The gauges this dashboard needed are on a real /metrics after one call, before any outage.
    assert {"tokonomics_ledger_lag_seconds", "tokonomics_ledger_pending_events", "tokonomics_redis_breaker_open",
            "tokonomics_redis_breaker_opens_total", "tokonomics_ledger_dead_letters_total",
            "tokonomics_requests_total", "tokonomics_proxy_overhead_seconds_bucket"} <= scraped
    exposed = scraped | _registered()
    used = {name for expr in _exprs() for name in SERIES.findall(expr)}
    used |= set(SERIES.findall(RULES.read_text()))
    assert len(used) > 10, used
    assert used <= exposed, sorted(used - exposed)
    assert "tokonomics_made_up_total" not in exposed  # the check can fail


@needs_promtool
def test_promtool_accepts_the_alert_rules() -> None:
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = [rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert {"TokonomicsSpendRateHigh", "TokonomicsLedgerLagging", "TokonomicsRedisBreakerOpen",
            "TokonomicsErrorRatioHigh"} <= set(alerts)


@needs_promtool
def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    """Each panel query, Grafana's variables filled in, as a recording rule: promtool parses its PromQL."""
    rules = []
    for i, expr in enumerate(_exprs()):
        for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:panel_{i}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
