from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from billing import login_throttle, session_scope  # noqa: F401  (connect the user_logged_in receivers)
