import logging.config
import os
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import celeryd_init, setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tokonomics.settings")

from django.conf import settings  # noqa: E402  (needs DJANGO_SETTINGS_MODULE)


def _django_logging(**_: Any) -> None:
    """The worker's and beat's logging is settings.LOGGING, JSON lines like the web app's and the proxy's,
    instead of Celery's own format (a receiver of setup_logging keeps Celery from configuring any).
    Also at celeryd_init, the worker's first signal, so its start-up warnings are JSON lines too."""
    logging.config.dictConfig(settings.LOGGING)
    logging.captureWarnings(True)  # as Django's own logging set-up does


if settings.LOG_FORMAT == "json":
    celeryd_init.connect(_django_logging, weak=False)
    setup_logging.connect(_django_logging, weak=False)

app = Celery("tokonomics")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The one beat schedule of the project.
app.conf.beat_schedule = {
    "usage-ingest": {"task": "billing.tasks.usage_ingest_task", "schedule": 1.0},
    "alert-retries": {"task": "alerts.tasks.alert_retries_run_task", "schedule": 10.0},
    "burn-rate": {"task": "alerts.tasks.burn_rate_check_task", "schedule": 60.0},
    "plan-request-limits": {"task": "alerts.tasks.plan_request_limits_check_task", "schedule": 60.0},
    "keys-expiring": {"task": "alerts.tasks.keys_expiring_check_task", "schedule": 600.0},
    "budget-forecasts": {"task": "alerts.tasks.budget_forecasts_check_task", "schedule": 300.0},
    # Monthly partitions of the usage ledger, created three months ahead (PostgreSQL; nothing on SQLite).
    "usage-partitions": {"task": "billing.tasks.usage_partitions_ensure_task", "schedule": crontab(hour=2, minute=47)},
    "usage-retention": {"task": "billing.tasks.usage_retention_purge_task", "schedule": crontab(hour=3, minute=17)},
}
