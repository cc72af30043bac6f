"""Celery tasks of alerts: each takes ids or nothing, calls one function, logs its counts."""

from __future__ import annotations

import logging

from alerts import evaluate
from alerts.events import alert_event_dispatch, alert_retries_run
from alerts.key_events import keys_expiring_check
from tokonomics.celery import app

log = logging.getLogger(__name__)


@app.task(ignore_result=True)
def alert_event_dispatch_task(event_id: int) -> int:
    return alert_event_dispatch(event_id=event_id)


@app.task(ignore_result=True)
def alert_retries_run_task() -> int:
    return alert_retries_run()


@app.task(ignore_result=True)
def budget_resolved_check_task(budget_id: int) -> int:
    return len(evaluate.budget_resolved_check(budget_id=budget_id))


@app.task(ignore_result=True)
def budget_forecasts_check_task() -> int:
    fired = len(evaluate.budget_forecasts_check())
    log.info("budget_forecasts_check fired %d alerts", fired)
    return fired


@app.task(ignore_result=True)
def burn_rate_check_task() -> int:
    fired = len(evaluate.burn_rate_check())
    log.info("burn_rate_check fired %d alerts", fired)
    return fired


@app.task(ignore_result=True)
def plan_request_limits_check_task() -> int:
    fired = len(evaluate.plan_request_limits_check())
    log.info("plan_request_limits_check fired %d alerts", fired)
    return fired


@app.task(ignore_result=True)
def keys_expiring_check_task() -> int:
    fired = len(keys_expiring_check())
    log.info("keys_expiring_check fired %d alerts", fired)
    return fired
