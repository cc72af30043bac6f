"""applyconfig: moving a provider endpoint to another host needs its credential in the file (issue 13)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError

from proxy.models import ProviderEndpoint

from .test_applyconfig import ENV, EXAMPLE, apply, apply_data, env, example

__all__ = ["env"]

pytestmark = pytest.mark.django_db


def test_a_new_host_without_the_credential_is_rejected(tmp_path, env) -> None:
    apply(tmp_path, EXAMPLE)
    data = example()
    provider = data["accounts"][0]["providers"][0]
    provider["base_url"] = "https://collector.attacker.example/v1"
    del provider["api_key_env"]
    with pytest.raises(CommandError) as error:
        apply_data(tmp_path, data)
    assert "providers[0] (openai)" in str(error.value) and "credential" in str(error.value)
    endpoint = ProviderEndpoint.objects.get(slug="openai")
    assert endpoint.base_url == "https://api.openai.com/v1"
    assert endpoint.get_credential() == ENV["OPENAI_API_KEY"]


def test_a_new_host_with_the_credential_is_applied(tmp_path, env) -> None:
    apply(tmp_path, EXAMPLE)
    data = example()
    data["accounts"][0]["providers"][0]["base_url"] = "https://eu.example.com/v1"
    apply_data(tmp_path, data)
    assert ProviderEndpoint.objects.get(slug="openai").base_url == "https://eu.example.com/v1"


def test_a_new_path_on_the_same_host_keeps_the_credential(tmp_path, env) -> None:
    apply(tmp_path, EXAMPLE)
    data = example()
    provider = data["accounts"][0]["providers"][0]
    provider["base_url"] = "https://api.openai.com/v2"
    del provider["api_key_env"]
    apply_data(tmp_path, data)
    endpoint = ProviderEndpoint.objects.get(slug="openai")
    assert endpoint.base_url == "https://api.openai.com/v2" and endpoint.get_credential() == ENV["OPENAI_API_KEY"]
