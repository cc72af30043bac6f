"""Cross-format fallback: an OpenAI chat call served by an Anthropic model, and an Anthropic Messages call
served by an OpenAI one — requests, answers, streams and errors (docs/routing.md, "Cross-format fallback")."""

from proxy.translate.adapters import ChatViaMessages, FormatAdapter, MessagesViaChat, Translation, adapter_for
from proxy.translate.base import StreamTranslator, Untranslatable

__all__ = ["ChatViaMessages", "FormatAdapter", "MessagesViaChat", "StreamTranslator", "Translation",
           "Untranslatable", "adapter_for"]
