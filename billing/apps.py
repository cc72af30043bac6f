from django.apps import AppConfig
from django.conf import settings


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        if settings.TOKONOMICS_PROCESS == "all":
            # Sign-ins happen in the web app only: a proxy worker loads none of it (nor SSO's HTTP client).
            from billing import login_throttle, session_scope  # noqa: F401  (connect the user_logged_in receivers)
