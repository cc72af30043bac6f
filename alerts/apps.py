from django.apps import AppConfig
from django.conf import settings


class AlertsConfig(AppConfig):
    name = "alerts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        if settings.TOKONOMICS_PROCESS == "all":
            # Alerts fire in the web app and Celery only; a proxy worker loads none of it (nor Celery).
            from . import signals

            signals.connect()
