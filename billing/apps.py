from django.apps import AppConfig
from django.conf import settings


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Receivers and the proxy's hooks need the models loaded: imported here, not at the top.
        from billing import signals
        from billing.accounts.directory import load_account
        from billing.budgets.counters import budget_counters_rebuild
        from billing.usage.ledger import usage_record_batch_from_events
        from proxy.hooks import ProxyHooks, hooks_install

        signals.connect()
        hooks_install(ProxyHooks(account_load=load_account, counters_rebuild=budget_counters_rebuild,
                                 usage_events_write=usage_record_batch_from_events))
        if settings.TOKONOMICS_PROCESS == "all":
            # Sign-ins happen in the web app only: a proxy worker loads none of it (nor SSO's HTTP client).
            from billing.sso import login_throttle, session_scope  # noqa: F401  (connect the user_logged_in receivers)
