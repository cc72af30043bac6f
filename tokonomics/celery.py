import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tokonomics.settings")

app = Celery("tokonomics")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The one beat schedule of the project.
app.conf.beat_schedule = {
    "usage-ingest": {"task": "billing.tasks.usage_ingest_task", "schedule": 1.0},
}
