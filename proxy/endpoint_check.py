"""Test a provider endpoint's connection from the web app: one real request for the provider's model
list (cheap, no tokens spent), sent with the stored credential through the outbound client, which
refuses private addresses unless the installation allows them (tokonomics/outbound_http.py)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from tokonomics.outbound_http import outbound_client

from .models import ProviderEndpoint

TIMEOUT_SECONDS = 10.0
ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True, slots=True)
class EndpointCheck:
    ok: bool
    message: str  # said plainly, for the page
    detail: str = ""  # the raw error or answer, for a disclosure


def _models_request(endpoint: ProviderEndpoint) -> tuple[str, dict[str, str]]:
    credential = endpoint.get_credential()
    if endpoint.wire_format == "anthropic":
        headers = {"anthropic-version": ANTHROPIC_VERSION, **({"x-api-key": credential} if credential else {})}
        return f"{endpoint.base_url}/v1/models", headers
    return f"{endpoint.base_url}/models", {"Authorization": f"Bearer {credential}"} if credential else {}


def provider_endpoint_check(*, endpoint: ProviderEndpoint) -> EndpointCheck:
    """Ask the endpoint for its models, and say what came back."""
    url, headers = _models_request(endpoint)
    try:
        with outbound_client(timeout=TIMEOUT_SECONDS) as client:
            response = client.get(url, headers=headers)
    except httpx.TimeoutException as error:
        return EndpointCheck(False, f"{endpoint.slug} did not answer: timed out after {TIMEOUT_SECONDS:g} s",
                             f"{type(error).__name__}: {error}"[:500])
    except httpx.HTTPError as error:
        raw = f"{type(error).__name__}: {error}"[:500]
        text = str(error).lower()
        if "private urls are turned off" in text:
            plain = "its address is on a private or local network, which this installation does not call"
        elif "does not resolve" in text or "name or service not known" in text:
            plain = "its address does not resolve (DNS failure)"
        elif "refused" in text:
            plain = "its server refused the connection"
        elif "certificate" in text or "ssl" in text:
            plain = "its TLS certificate was not accepted"
        else:
            plain = "the connection failed"
        return EndpointCheck(False, f"Could not reach {endpoint.slug}: {plain}", raw)
    body = response.text[:300]
    if response.status_code in (401, 403):
        return EndpointCheck(False, f"{endpoint.slug} answered {response.status_code}: the credential was refused "
                             "(check it, or store one)", body)
    if response.status_code >= 400:
        return EndpointCheck(False, f"{endpoint.slug} answered {response.status_code} to a model list request",
                             body)
    try:
        count = len(response.json().get("data", []))
    except (ValueError, AttributeError):
        count = 0
    listed = f"; it lists {count} models" if count else ""
    return EndpointCheck(True, f"Connected to {endpoint.slug}: it answered {response.status_code}{listed}.")
