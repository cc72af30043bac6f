"""Built-in provider kinds (CONTRACT §1): slug → wire format, default base URL, genai-prices id."""

from __future__ import annotations

from typing import NamedTuple


class BuiltinProvider(NamedTuple):
    wire_format: str
    base_url: str  # "" when every account has its own (an Azure resource): then the endpoint must name it
    pricing_id: str


BUILTIN_PROVIDERS: dict[str, BuiltinProvider] = {
    "openai": BuiltinProvider("openai", "https://api.openai.com/v1", "openai"),
    "anthropic": BuiltinProvider("anthropic", "https://api.anthropic.com", "anthropic"),
    "deepseek": BuiltinProvider("openai", "https://api.deepseek.com/v1", "deepseek"),
    "gemini": BuiltinProvider("openai", "https://generativelanguage.googleapis.com/v1beta/openai", "google"),
    # Gemini's own API: google-genai appends /v1beta/models/{model}:generateContent to its base URL.
    "gemini-native": BuiltinProvider("gemini", "https://generativelanguage.googleapis.com", "google"),
    "mistral": BuiltinProvider("openai", "https://api.mistral.ai/v1", "mistral"),
    "groq": BuiltinProvider("openai", "https://api.groq.com/openai/v1", "groq"),
    "together": BuiltinProvider("openai", "https://api.together.xyz/v1", "together"),
    "perplexity": BuiltinProvider("openai", "https://api.perplexity.ai", "perplexity"),
    "fireworks": BuiltinProvider("openai", "https://api.fireworks.ai/inference/v1", "fireworks"),
    "openrouter": BuiltinProvider("openai", "https://openrouter.ai/api/v1", "openrouter"),
    "azure-openai": BuiltinProvider("azure-openai", "", "azure"),  # base URL: https://NAME.openai.azure.com
}
# A custom slug of a wire format that implies its pricing provider: Azure serves its own price list.
WIRE_FORMAT_PRICING = {"azure-openai": "azure"}

WIRE_FORMATS = ("openai", "anthropic", "gemini", "azure-openai")
