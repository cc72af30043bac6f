"""seeddemo applies tokonomics/demo.yaml through applyconfig's code: once, then never again."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from billing.models import Account, AuditEntry

pytestmark = pytest.mark.django_db


def test_the_demo_account_is_created_once_and_audited_as_the_demo_file(plans, monkeypatch) -> None:
    monkeypatch.setenv("TOKONOMICS_DEMO_PASSWORD", "a demo password long enough")
    first = io.StringIO()
    call_command("seeddemo", stdout=first)
    assert "demo account ready (" in first.getvalue()
    demo = Account.objects.get(slug="demo")
    assert AuditEntry.objects.filter(account=demo, action="account.created").exists()
    assert set(AuditEntry.objects.values_list("actor_kind", "actor_label")) == {("config", "config:demo.yaml")}
    gemini = demo.provider_endpoints.get(slug="gemini-native")  # the native Gemini API, on the simulator
    assert (gemini.wire_format, gemini.base_url, gemini.pricing_provider) == ("gemini", "http://127.0.0.1:8100",
                                                                              "google")
    entries = AuditEntry.objects.count()
    second = io.StringIO()
    call_command("seeddemo", stdout=second)
    assert second.getvalue().strip() == "demo account ready"
    assert AuditEntry.objects.count() == entries


def test_sim_port_moves_the_demo_providers(plans, monkeypatch) -> None:
    """bin/run exports SIM_PORT: a second instance's demo providers call its own simulator."""
    from proxy.models import ProviderEndpoint

    monkeypatch.setenv("TOKONOMICS_DEMO_PASSWORD", "a demo password long enough")
    monkeypatch.setenv("SIM_PORT", "8123")
    call_command("seeddemo", stdout=io.StringIO())
    urls = set(ProviderEndpoint.objects.filter(account__slug="demo").values_list("base_url", flat=True))
    assert urls == {"http://127.0.0.1:8123/v1", "http://127.0.0.1:8123"}


def test_the_demo_simulator_port_defaults_to_8100_and_must_be_a_port(monkeypatch) -> None:
    from django.core.management import CommandError

    from tokonomics.config.management.commands.seeddemo import demo_config_text

    assert "127.0.0.1:8100/v1" in demo_config_text({})
    assert "${SIM_PORT}" not in demo_config_text({"SIM_PORT": "8200"})
    with pytest.raises(CommandError, match="not a port"):
        demo_config_text({"SIM_PORT": "80; rm -rf /"})


def test_the_demo_account_has_its_response_cache_on(plans, monkeypatch) -> None:
    monkeypatch.setenv("TOKONOMICS_DEMO_PASSWORD", "a demo password long enough")
    call_command("seeddemo", stdout=io.StringIO())
    demo = Account.objects.get(slug="demo")
    assert (demo.cache_enabled, demo.cache_ttl_seconds) == (True, 3600)
def test_the_demo_account_masks_an_email_in_its_traffic(plans, monkeypatch) -> None:
    """The demo's guardrails: the address one of demotraffic's questions carries is masked (issue 18)."""
    from proxy.guardrail_try import guardrail_try
    from proxy.models import GuardrailPolicy
    from tools.management.commands import demotraffic

    monkeypatch.setenv("TOKONOMICS_DEMO_PASSWORD", "a demo password long enough")
    call_command("seeddemo", stdout=io.StringIO())
    spec = GuardrailPolicy.objects.get(account__slug="demo", key=None).spec
    monkeypatch.setattr(demotraffic.random, "choice", lambda options: options[-1])
    question = demotraffic._body("openai", "gpt-4o-mini", stream=False)["messages"][0]["content"]
    tried = guardrail_try(spec=spec, text=question)
    assert "jane.doe@example.com" in question and tried.result == "Draft a polite reply to [EMAIL] about her claim."
    assert tried.hits == [{"rule": "pii-email", "action": "mask", "count": 1}]
