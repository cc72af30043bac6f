"""The Azure OpenAI wire format: OpenAI's bodies, usage and errors on Azure's routes.

An Azure endpoint's base URL is the resource (`https://NAME.openai.azure.com`); what follows
/proxy/{slug} is Azure's own path, as `AzureOpenAI(azure_endpoint=f"{SITE}/proxy/{slug}")` sends it:

- deployment routes, the model being the deployment in the path (the body's `model`, if any, is
  ignored by Azure): POST /openai/deployments/{deployment}/chat/completions?api-version=…, and
  …/completions, …/embeddings;
- the v1 routes, the deployment in the body's `model`: POST /openai/v1/chat/completions, …/completions,
  …/embeddings, …/responses (and the preview /openai/responses?api-version=…).

A deployment is a name the account chose, not a model: the endpoint's `deployments` map says which
model each one serves (gateway.py applies it). The client's key comes in `api-key`, as AzureOpenAI
sends it, and the endpoint's credential goes up in `api-key` (headers.py).
"""

from __future__ import annotations

from typing import ClassVar

from proxy.providers.base import FreeRoute, Operation, route_path
from proxy.providers.openai import OpenAIWireFormat

_DEPLOYMENT_ROUTES: dict[str, Operation] = {
    "chat/completions": Operation.CHAT,
    "completions": Operation.COMPLETIONS,
    "embeddings": Operation.EMBEDDINGS,
}
_BODY_MODEL_ROUTES: dict[str, Operation] = {
    "/openai/v1/chat/completions": Operation.CHAT,
    "/openai/v1/completions": Operation.COMPLETIONS,
    "/openai/v1/embeddings": Operation.EMBEDDINGS,
    "/openai/v1/responses": Operation.RESPONSES,
    "/openai/responses": Operation.RESPONSES,
}
_DEPLOYMENTS_PREFIX = "/openai/deployments/"


def _deployment_route(path: str) -> tuple[str, str] | None:
    """(deployment as sent, operation tail in lower case) of a deployment route, else None."""
    plain = path.partition("?")[0].rstrip("/")
    if not plain.lower().startswith(_DEPLOYMENTS_PREFIX):
        return None
    deployment, slash, tail = plain[len(_DEPLOYMENTS_PREFIX):].partition("/")
    if not deployment or not slash:
        return None
    return deployment, tail.lower()


class AzureOpenAIWireFormat(OpenAIWireFormat):
    """Azure OpenAI: deployment routes and the v1 routes."""

    name = "azure-openai"
    free_routes: ClassVar[tuple[FreeRoute, ...]] = (
        FreeRoute("GET", "/openai/models", "models"),
        FreeRoute("GET", "/openai/models/", "models"),
        FreeRoute("GET", "/openai/v1/models", "models"),
        FreeRoute("GET", "/openai/v1/models/", "models"),
    )

    def operation_for(self, method: str, path: str) -> Operation | None:
        if method.upper() != "POST":
            return None
        deployment_route = _deployment_route(path)
        if deployment_route is not None:
            return _DEPLOYMENT_ROUTES.get(deployment_route[1])
        return _BODY_MODEL_ROUTES.get(route_path(path))

    def path_model(self, path: str) -> str | None:
        deployment_route = _deployment_route(path)
        if deployment_route is None or deployment_route[1] not in _DEPLOYMENT_ROUTES:
            return None
        return deployment_route[0]
