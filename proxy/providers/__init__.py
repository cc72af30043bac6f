"""Wire formats the proxy speaks, by name: an endpoint's `kind` picks one (CONTRACT §5)."""

from __future__ import annotations

from proxy.providers.anthropic import AnthropicWireFormat
from proxy.providers.azure import AzureOpenAIWireFormat
from proxy.providers.base import Operation, ProviderError, RequestInfo, StreamReader, WireFormat
from proxy.providers.gemini import GeminiWireFormat
from proxy.providers.openai import OpenAIWireFormat

WIRE_FORMATS: dict[str, WireFormat] = {
    OpenAIWireFormat.name: OpenAIWireFormat(),
    AnthropicWireFormat.name: AnthropicWireFormat(),
    GeminiWireFormat.name: GeminiWireFormat(),
    AzureOpenAIWireFormat.name: AzureOpenAIWireFormat(),
}

__all__ = ["WIRE_FORMATS", "Operation", "ProviderError", "RequestInfo", "StreamReader", "WireFormat"]
