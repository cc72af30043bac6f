"""The Tokonomics project: settings, ASGI entry points, URLs and the Celery app.

The Celery app lives in `tokonomics.celery` and is imported by the task modules that use it, not
from here: a proxy worker (`tokonomics.proxy_asgi`) never sends a task and so never loads Celery.
`celery -A tokonomics` still finds it.
"""
